"""Comparing finished runs: one figure of evaluation curves and a Markdown table of scores and
transfer drops (docs/algorithms.md, Metrics), from the runs' ``metrics.jsonl`` / ``summary.json``."""
from __future__ import annotations

import json
import os

import numpy as np

from smac_jax.analysis.drop import NullDrop, null_drop
from smac_jax.errors import SmacJaxError
from smac_jax.training.logger import MetricsLog, standard_error
from smac_jax.training.summary import DROP_WINDOW
from smac_jax.training.vmap_sweep import is_swept, pair_label, setting_dirs


def load_run(workdir: str) -> dict:
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    if "settings" in summary and "vmap_sweep" in summary:
        raise SmacJaxError(f"{workdir} holds a vmap_sweep run of {len(summary['settings'])} settings; each setting's "
                           f"outputs are a run of their own: {os.path.join(workdir, 'settings', '<k>')}")
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    return {"summary": summary, "config": config, "log": MetricsLog(os.path.join(workdir, "metrics.jsonl")),
            "workdir": workdir}


def load_labelled(workdir: str) -> dict[str, dict]:
    """``{label: run}`` (:func:`load_run` dicts): the run in ``workdir`` as ``offline -> online``,
    or for a ``vmap_sweep`` run each finished setting, its learners named with their values
    (``cql -> sac [actor_lr=0.0001]``)."""
    if not is_swept(workdir):
        run = load_run(workdir)
        return {f"{run['config']['offline']['learner']} -> {run['config']['online']['learner']}": run}
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    runs = {}
    for d in setting_dirs(workdir):
        if os.path.exists(os.path.join(d, "summary.json")):
            runs[pair_label(config, int(os.path.basename(d)))] = load_run(d)
    return runs


def curve(run: dict) -> dict:
    """A run's evaluation curve as plotted by :func:`plot_runs`: ``x`` (offline steps, then online
    steps shifted by the last offline step, the ``boundary``), ``phase`` and ``step`` of each
    point, ``mean`` and ``se`` (standard error) over the ``n`` seeds, of the summary's metric."""
    key = run["summary"]["metric"]
    off_s, off = run["log"].evaluations("offline", key)
    on_s, on = run["log"].evaluations("online", key)
    b = int(off_s.max()) if len(off_s) else 0
    vals = np.concatenate([off, on], axis=1)
    return {"x": np.concatenate([off_s, on_s + b]), "phase": ["offline"] * len(off_s) + ["online"] * len(on_s),
            "step": np.concatenate([off_s, on_s]), "mean": np.nanmean(vals, 0),
            "se": standard_error(vals, 0), "n": vals.shape[0], "boundary": b, "metric": key}


def plot_runs(runs: dict[str, dict], path: str, title: str) -> None:
    """Curves of every run on one axis (offline steps then online steps), mean +- s.e. over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    boundary = None
    for label, run in runs.items():
        c = curve(run)
        boundary = c["boundary"] if boundary is None else boundary
        steps, mean, se = c["x"], c["mean"], c["se"]
        (line,) = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2, color=line.get_color())
    if boundary:
        ax.axvline(boundary, color="k", ls="--", lw=1)
        ax.text(boundary, ax.get_ylim()[0], " offline -> online", va="bottom", fontsize=8)
    ax.set_xlabel("offline update steps, then online environment steps")
    labels = {run["summary"].get("metric_label") for run in runs.values()} - {None}  # older runs have none
    ax.set_ylabel(labels.pop() if len(labels) == 1 else
                  "normalised score" if c["metric"] == "eval_score" else "evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def drop_noise(run: dict, episodes: int = 50, eval_seed: int = 1_000_000, threshold: float = 5.0) -> list[NullDrop]:
    """Per seed: the transfer drop the run's own protocol would report had the policy not changed
    after the hand-over (:func:`smac_jax.analysis.drop.null_drop`). The run's final offline actor is
    evaluated over ``episodes`` episodes (episode ``e`` from reset seed ``eval_seed + e``), and its
    evaluations are resampled on the run's schedule: ``eval.episodes`` episodes per evaluation, as
    many online evaluations as fall in the drop's window (the first 10% of the online steps, the
    one at hand-over included). ``rate`` is then how often a drop above ``threshold`` is reported
    for a policy that did not change: the false-alarm rate of the run's "smooth" column."""
    from smac_jax.analysis import landscape as ls

    config, s = run["config"], run["summary"]
    on_steps, _ = run["log"].evaluations("online", s["metric"])
    n_early = int((on_steps <= DROP_WINDOW * config["online"]["steps"]).sum())
    if n_early == 0:
        raise SmacJaxError(f"{run['workdir']}: no online evaluation in the drop's window")
    env_fn, value, _ = ls.evaluation_environment({run["workdir"]: config})
    learner, (actor,) = ls.common_actors([ls.load_actor(run["workdir"], "offline")])
    scores = value(ls.evaluate_stacked(learner, actor, env_fn, episodes, eval_seed))  # (seeds, episodes)
    return [null_drop(scores[i], config["eval"]["episodes"], n_early, threshold, seed=i)
            for i in range(scores.shape[0])]


def table(runs: dict[str, dict], noise: dict[str, list[NullDrop]] | None = None) -> str:
    """Scores and transfer drops per run (mean ± s.e. over seeds; drops per seed). With ``noise``
    (:func:`drop_noise` per run label) a last column: per seed, how often a drop above the
    threshold would be reported had the policy not changed."""
    rows = ["| run | offline final | online final | transfer drop (per seed) | mean drop | smooth (<= 5) |",
            "|---|---|---|---|---|---|"]
    if noise:
        t = next(iter(noise.values()))[0].threshold
        rows = [rows[0] + f" P(drop > {t:g}) if the policy had not changed (per seed) |", rows[1] + "---|"]
    returns_only, unmeasured = [], []
    for label, run in runs.items():
        s = run["summary"]
        off = np.asarray(s.get("offline_final", [np.nan]))
        on = np.asarray(s.get("online_final", [np.nan]))
        if "transfer_drop" in s:
            drops = s["transfer_drop"]
            mark = " †" if "transfer_drop_warning" in s else ""
            unmeasured += [label] if mark else []
            drop_cells = (f"{', '.join(f'{d:.1f}' for d in drops)}{mark} | {np.mean(drops):.1f}{mark} | "
                          f"{sum(d <= 5 for d in drops)}/{len(drops)}{mark} |")
        else:
            drop_cells = "- | - | - |"
        if s.get("metric") == "eval_return":
            returns_only.append(label)
        rows.append(
            f"| {label} | {off.mean():.1f} ± {standard_error(off):.1f} | {on.mean():.1f} ± {standard_error(on):.1f} | {drop_cells}"
            + ((f" {', '.join(f'{n.rate:.2f}' for n in noise[label])} |" if label in noise else " - |")
               if noise else "")
        )
    if unmeasured:
        rows.append(f"\n† {', '.join(unmeasured)}: no online evaluation after the first online update falls in the "
                    "drop's window, so the drop compares evaluations of the handed-over policy only and measures "
                    "nothing about fine-tuning (the run's transfer_drop_warning); evaluate more often or check it "
                    "with experiments/transfer_check.py.")
    if returns_only:
        rows.append(f"\n{', '.join(returns_only)}: evaluation returns, not normalised scores (the dataset has no "
                    "reference returns), and no transfer drop, which is defined on normalised scores; set "
                    "ref_min_score and ref_max_score for both.")
    return "\n".join(rows)


def offline_table(runs: dict[str, dict], reference: str | None = None) -> str:
    """Final offline score per learner (mean ± s.e. over seeds), and the difference to ``reference``
    (e.g. BC) with its standard error."""
    finals = {k: np.asarray(r["summary"].get("offline_final", [np.nan])) for k, r in runs.items()}
    ref = finals.get(reference) if reference else None
    head = "| offline learner | final score | seeds |" + (f" minus {reference} |" if ref is not None else "")
    rows = [head, "|---|---|---|" + ("---|" if ref is not None else "")]
    for k, v in sorted(finals.items(), key=lambda kv: -np.mean(kv[1])):
        row = f"| {k} | {v.mean():.1f} ± {standard_error(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} |"
        if ref is not None:
            d = v.mean() - ref.mean()
            row += f" {d:+.1f} ± {np.sqrt(standard_error(v) ** 2 + standard_error(ref) ** 2):.1f} |"
        rows.append(row)
    return "\n".join(rows)
