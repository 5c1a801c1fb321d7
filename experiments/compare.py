"""Run several offline learners -> one online learner with the same budgets, then write a results
page (curves + transfer-drop table). The README's first command: SMAC -> SAC against
TD3+BC -> SAC on the generated Pendulum-v1 medium dataset (task ``quickstart``: 20k offline
updates, 10k online steps), page and plot in ``<root>/results.md``:

    python experiments/compare.py --root=runs/quickstart
    python experiments/compare.py --task=pendulum --offline=smac,sac,cql --online=sac \
        --root=runs/compare-pendulum --page=docs/results_pendulum.md
    # extra overrides go to every run:
    python experiments/compare.py --task=hopper --set=offline.steps=20000 --set=online.steps=20000 ...
"""
from __future__ import annotations

import os
import sys

from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import o2o as o2o_configs  # noqa: E402

from smac_jax.cli import apply_override, check_set_once, run_cli  # noqa: E402
from smac_jax.analysis.landscape import LandscapeInputError  # noqa: E402
from smac_jax.errors import SmacJaxError  # noqa: E402
from smac_jax.analysis.compare import drop_noise, load_labelled, offline_table, plot_runs, table  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402
from smac_jax.training.dataset_factory import ensure_dataset  # noqa: E402
from smac_jax.training.pipeline import check_start, run, same_config  # noqa: E402

_TASK = flags.DEFINE_string("task", "quickstart", "Task in configs/o2o.py (default: the README's first job, "
                            "Pendulum-v1 medium at 20k offline updates + 10k online steps).")
_OFF = flags.DEFINE_list("offline", ["smac", "td3bc"], "Offline learners.")
_ON = flags.DEFINE_string("online", "sac", "Online learner.")
_ROOT = flags.DEFINE_string("root", None, "Parent directory of the run workdirs.", required=True)
_PAGE = flags.DEFINE_string("page", None, "Markdown results page to write, the plot beside it "
                            "(default: <root>/results.md).")
_SET = flags.DEFINE_multi_string("set", [], "Overrides KEY=VALUE applied to every run's config.")
_RESUME = flags.DEFINE_bool("resume", True, "Resume unfinished runs and reuse finished ones (a finished run "
                             "of another config is an error, not reused).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the runs already under --root, finished or not "
                                "(instead of --resume).")
_ONLY_REPORT = flags.DEFINE_bool("only_report", False, "Only write the page from existing runs.")
_OFFLINE_ONLY = flags.DEFINE_string("offline_table", None, "Write an offline-score table relative to this "
                                    "learner (e.g. bc) instead of the transfer table; use with online.steps=0.")
_NOISE = flags.DEFINE_integer("noise_episodes", 50, "Evaluate each run's final offline actor over this many episodes "
                              "and add to the table how often its drop column would exceed 5 for a policy that "
                              "did not change (evaluation noise alone); 0 = off.")


_NOISE_NOTE = """
The drop is the last offline evaluation minus the lowest online evaluation in the first 10% of the
online phase, each the mean of {per_eval} episodes from different start states. The last column
is what evaluation noise alone produces on that schedule: each run's final offline actor evaluated
over {episodes} more episodes, its evaluations resampled, and the share of draws with a drop above 5
although the policy never changed. Where that share is large, a drop in this table does not show
that the policy got worse; `experiments/transfer_check.py` measures it on common start states
(docs/analysis.md, "Is the drop real?").
"""


def _noise(runs: dict) -> dict:
    """drop_noise per run that has an online phase ({} with --noise_episodes=0)."""
    if _NOISE.value <= 0:
        return {}
    out = {}
    logging.set_verbosity(logging.ERROR)  # orbax warns about every checkpoint's optional metadata file
    try:
        for label, r in runs.items():
            if r["config"]["online"]["steps"] > 0 and "transfer_drop" in r["summary"]:
                print(f"[compare] {label}: evaluation noise of the drop ({_NOISE.value} episodes per seed)", flush=True)
                out[label] = drop_noise(r, _NOISE.value)
    except LandscapeInputError as e:
        raise SmacJaxError(f"--noise_episodes: {e}") from None
    finally:
        logging.set_verbosity(logging.WARNING)
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tune_host_allocator()
    if _NOISE.value < 0 or _NOISE.value == 1:
        raise SmacJaxError(f"--noise_episodes must be 0 (off) or >= 2 (a spread needs two scores), got {_NOISE.value}")
    check_set_once(_SET.value, own_flags={"task": "task", "offline.learner": "offline", "online.learner": "online"})
    runs = {}
    for off in _OFF.value:
        wd = os.path.join(_ROOT.value, f"{off}-{_ON.value}")
        if not _ONLY_REPORT.value:
            cfg = o2o_configs.get_config(f"{_TASK.value},{off},{_ON.value}")
            for a in _SET.value:
                apply_override(cfg, a)
            finished = os.path.exists(os.path.join(wd, "summary.json"))
            if finished and not _OVERWRITE.value and not same_config(wd, cfg):
                raise SmacJaxError(f"{wd} holds a finished run of another config than this command's (task, "
                                   "learners or --set); pass --overwrite to replace it, or choose another --root")
            if not finished or _OVERWRITE.value:
                resume = _RESUME.value and not _OVERWRITE.value and os.path.exists(os.path.join(wd, "config.json"))
                check_start(cfg, wd, resume, _OVERWRITE.value)  # before a dataset is generated
                ensure_dataset(cfg.dataset)
                run(cfg, wd, resume=resume, overwrite=_OVERWRITE.value)
        if os.path.exists(os.path.join(wd, "summary.json")):
            runs.update(load_labelled(wd))  # a vmap_sweep run (--set=vmap_sweep=...): each setting
    if not runs:
        raise SmacJaxError(f"no finished runs under {_ROOT.value} for offline learners {', '.join(_OFF.value)} -> "
                           f"{_ON.value}; nothing to report (run without --only_report first)")
    page = _PAGE.value or os.path.join(_ROOT.value, "results.md")
    png = os.path.splitext(page)[0] + ".png"
    os.makedirs(os.path.dirname(page) or ".", exist_ok=True)
    any_cfg = next(iter(runs.values()))["config"]
    task = any_cfg.get("task") or _TASK.value  # the runs' own task (--only_report reads runs of any task)
    # the whole page is computed before it is written: a failure leaves an earlier page as it was
    text = (f"# {task}: {', '.join(runs)}\n\n"
            f"Dataset `{any_cfg['dataset']['id']}`, {any_cfg['n_seeds']} seeds, "
            f"{any_cfg['offline']['steps']} offline updates, {any_cfg['online']['steps']} online steps "
            f"(UTD {any_cfg['online']['utd']}, replay `{any_cfg['online']['replay']['init']}`).\n\n"
            f"![curves]({os.path.basename(png)})\n\n")
    if _OFFLINE_ONLY.value:
        text += offline_table({k.split(" ->")[0]: v for k, v in runs.items()}, _OFFLINE_ONLY.value) + "\n"
    else:
        noise = _noise(runs)
        text += table(runs, noise) + "\n"
        if noise:
            text += _NOISE_NOTE.format(episodes=_NOISE.value, per_eval=any_cfg["eval"]["episodes"])
    plot_runs(runs, png, f"{task}: offline -> {_ON.value}")
    with open(page, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    run_cli(main)
