"""Is a run's transfer drop real, or evaluation noise? (docs/analysis.md, "Is the drop real?")

Re-evaluates a run's last offline actor and every online actor saved in the drop's window with
many episodes from the same start states, then reports per seed:

* the protocol's drop (from metrics.jsonl, the window below);
* the paired drop on common start states, with its standard error
  (smac_jax.analysis.drop.paired_drop);
* the null drop: how often the protocol would report a drop above 5 had the offline policy not
  changed at all (its evaluations resampled from the offline actor's episodes;
  smac_jax.analysis.drop.null_drop).

Save online checkpoints inside the window for the paired drop, e.g. a run with
``--set=online.ckpt_every=500 --set=ckpt_keep=50``.

``--continuation=WORKDIR`` adds a control: a run whose OFFLINE phase continues the checked runs'
offline training past their hand-over (their pretrain copied, with a larger ``offline.steps`` and
offline checkpoints inside the window). Its offline actors after the hand-over, up to as many
updates as the online window holds (window - learning_starts), are evaluated on the same start
states: the drop that continuing offline for the same number of updates would have caused (for
runs with different ``learning_starts``, one such drop per number of updates). A
transfer drop no larger than this one is not caused by going online.

    python experiments/transfer_check.py --workdirs=runs/sweep/hopper/smac-sac --episodes=50 --out=runs/check

A ``vmap_sweep`` run given as a workdir stands for all its settings (``settings/<k>``), each
labelled with its values.

Writes into --out: transfer_check.json and transfer_check.png (score along the online phase per
seed, mean +- standard error over the common episodes). Bad input: one line ``error: ...``.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import flags, logging

from smac_jax.analysis import landscape as ls
from smac_jax.analysis.drop import null_drop, paired_drop
from smac_jax.cli import earlier_outputs, fail, remove_outputs, run_cli
from smac_jax.runtime import tune_host_allocator
from smac_jax.training.logger import MetricsLog
from smac_jax.training.summary import DROP_WINDOW, transfer_drop

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Finished (or partly finished) offline-to-online run workdirs.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the results an earlier run wrote to --out (all of them).")
OUTPUTS = ("transfer_check.json", "continuation_control.json", "transfer_check.png")
_EPISODES = flags.DEFINE_integer("episodes", 50, "Episodes per actor, from the same start states for every actor.")
_EVAL_SEED = flags.DEFINE_integer("eval_seed", 1_000_000, "Episode e starts from reset seed eval_seed + e (keep it "
                                  "away from the seeds the runs' own evaluations used).")
_WINDOW = flags.DEFINE_integer("window_steps", None, "Online steps the drop looks at (default: the first 10% of "
                               "the run's online.steps, as the protocol's drop).")
_LABELS = flags.DEFINE_list("labels", [], "A name per workdir for the figure and the printout (default: the "
                            "learner pair and the workdir's last three path parts).")
_THRESHOLD = flags.DEFINE_float("threshold", 5.0, "A drop above this is not smooth (normalised points).")
_CONTINUATION = flags.DEFINE_string("continuation", None, "A run continuing the checked runs' offline phase past "
                                    "their hand-over, with offline checkpoints in the window: the control.")


def _check_run(wd: str) -> tuple[dict, int]:
    config = ls.read_run_config(wd)
    window = _WINDOW.value if _WINDOW.value is not None else int(DROP_WINDOW * config["online"]["steps"])
    if window < 1:
        raise ls.LandscapeInputError(f"{wd}: the drop's window is {window} online steps; pass --window_steps")
    return config, window


def _protocol(wd: str, window: int, key: str):
    """The protocol's evaluations and drop per seed with the window in steps."""
    log = MetricsLog(os.path.join(wd, "metrics.jsonl"))
    _, off = log.evaluations("offline", key)
    on_steps, on = log.evaluations("online", key)
    if not off.size or not on.size:
        raise ls.LandscapeInputError(f"{wd}: metrics.jsonl has no offline and online evaluations yet")
    n_early = int((on_steps <= window).sum())
    if n_early == 0:
        raise ls.LandscapeInputError(f"{wd}: no online evaluation within the first {window} steps")
    drops = [transfer_drop(off[i, -1], on_steps, on[i], window, window=1.0) for i in range(on.shape[0])]
    return np.asarray(drops), n_early


def _check(wd: str, label: str | None, env_fn, value, value_name: str) -> dict:
    config, window = _check_run(wd)
    saved = ls.checkpoint_steps(wd, "online")
    steps = [s for s in saved if 0 < s <= window]
    if not steps:
        every, keep = config["online"]["ckpt_every"], config.get("ckpt_keep")
        why = (f"its checkpoints come every {every} steps: run with online.ckpt_every <= {window}" if every > window
               else f"the run keeps only its last {keep} checkpoints per phase: run with a larger ckpt_keep" if saved
               else "the run saved no online checkpoint yet")
        raise ls.LandscapeInputError(f"{wd}: no online checkpoint in the first {window} steps (saved: {saved}); {why}")
    snaps = [ls.load_actor(wd, "offline")] + [ls.load_actor(wd, "online", s) for s in steps]
    learner, actors = ls.common_actors(snaps)
    scores = np.stack([value(ls.evaluate_stacked(learner, a, env_fn, _EPISODES.value, _EVAL_SEED.value))
                       for a in actors])  # (1 + checkpoints, seeds, episodes)
    pd = paired_drop(scores[0], scores[1:])
    pair = f"{config['offline']['learner']} -> {config['online']['learner']}"
    key = "eval_score" if value_name == "normalised score" else "eval_return"
    protocol, n_early = _protocol(wd, window, key)
    nulls = [null_drop(scores[0, i], config["eval"]["episodes"], n_early, _THRESHOLD.value, seed=i)
             for i in range(scores.shape[1])]
    return {
        "workdir": wd, "pair": pair, "label": label or f"{pair} ({os.path.join(*os.path.normpath(wd).split(os.sep)[-3:])})",
        "metric": key, "window_steps": window, "episodes": _EPISODES.value, "eval_seed": _EVAL_SEED.value,
        "checkpoint_steps": [0] + steps, "mean_scores": np.concatenate([pd.offline[None], pd.means]).tolist(),
        "protocol_drop": protocol.tolist(), "protocol_episodes": config["eval"]["episodes"],
        "protocol_evals_in_window": n_early,
        "paired_drop": pd.drop.tolist(), "paired_diff": pd.diff.tolist(), "paired_se": pd.se.tolist(),
        "paired_worst_step": [steps[i] for i in pd.worst],
        "null_drop_rate": [n.rate for n in nulls], "null_drop_mean": [n.mean for n in nulls],
        "null_drop_p90": [n.p90 for n in nulls],
        "episode_sd_offline": scores[0].std(-1, ddof=1).tolist(),
        "offline_episode_scores": scores[0].tolist(),
        "se": (scores.std(-1, ddof=1) / np.sqrt(scores.shape[-1])).tolist(),
    }


def _control(wd: str, checked: list[dict], configs: dict, env_fn, value) -> dict:
    """The paired drop of the continued offline phase of ``wd`` over the checked runs' window
    (``configs``: every run's config by workdir). Each checked run's window holds ``window_steps -
    learning_starts`` updates; the control covers the largest of these, and where the runs differ
    (``by_updates``) also each smaller one, over the checkpoints within it."""
    cfgs = [configs[r["workdir"]] for r in checked]
    handover = {c["offline"]["steps"] for c in cfgs}
    if len(handover) != 1:
        raise ls.LandscapeInputError("--continuation: the checked runs differ in their hand-over step; check them "
                                     "separately")
    h = handover.pop()
    per_run = [r["window_steps"] - c["online"]["learning_starts"] for r, c in zip(checked, cfgs)]
    for r, n in zip(checked, per_run):
        if n < 1:
            raise ls.LandscapeInputError(f"--continuation: the window of {r['workdir']} holds no online update ({n})")
        r["control_updates"] = n
    u = max(per_run)
    saved = ls.checkpoint_steps(wd, "offline")
    steps = [s for s in saved if h < s <= h + u]
    if h not in saved or not steps or steps[0] > h + min(per_run):
        raise ls.LandscapeInputError(f"--continuation: {wd} needs offline checkpoints at the hand-over ({h}) and "
                                     f"within {min(per_run)} updates after it (saved: {saved})")
    snaps = [ls.load_actor(wd, "offline", s) for s in [h] + steps]
    # the control must continue the checked runs' own offline phase: its actor at the hand-over is
    # theirs (same learner, data, seeds and updates), parameter for parameter
    for r in checked:
        theirs = ls.load_actor(r["workdir"], "offline", h).actor
        same = jax.tree.structure(theirs) == jax.tree.structure(snaps[0].actor) and all(
            np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree.leaves(theirs), jax.tree.leaves(snaps[0].actor)))
        if not same:
            raise ls.LandscapeInputError(
                f"--continuation: {wd}'s actor at the hand-over (offline step {h}) is not {r['workdir']}'s: the "
                f"control must continue the checked runs' own offline phase (experiments/continue_offline.py "
                f"--run=<one of them>)")
    learner, actors = ls.common_actors(snaps)
    scores = np.stack([value(ls.evaluate_stacked(learner, a, env_fn, _EPISODES.value, _EVAL_SEED.value))
                       for a in actors])
    pd = paired_drop(scores[0], scores[1:])
    out = {"workdir": wd, "handover_step": h, "updates": u, "checkpoint_steps": [h] + steps,
           "mean_scores": np.concatenate([pd.offline[None], pd.means]).tolist(),
           "paired_drop": pd.drop.tolist(), "paired_se": pd.se.tolist(),
           "paired_worst_step": [steps[i] for i in pd.worst]}
    if len(set(per_run)) > 1:
        out["by_updates"] = {}
        for n in sorted(set(per_run)):
            k = sum(s <= h + n for s in steps)
            sub = paired_drop(scores[0], scores[1:1 + k])
            out["by_updates"][str(n)] = {"paired_drop": sub.drop.tolist(), "paired_se": sub.se.tolist(),
                                         "paired_worst_step": [steps[i] for i in sub.worst]}
    return out


def _plot(results: list[dict], control: dict | None, value_name: str, out: str) -> None:
    import matplotlib.pyplot as plt

    n = len(results) + (control is not None)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False, sharey=True)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if control is not None:
        ax = axes.ravel()[len(results)]
        x = np.asarray(control["checkpoint_steps"]) - control["handover_step"]
        m = np.asarray(control["mean_scores"])
        for i in range(m.shape[1]):
            ax.plot(x, m[:, i], marker="o", label=f"seed {i}: drop {control['paired_drop'][i]:.1f} "
                    f"+- {control['paired_se'][i]:.1f}")
        ax.set_title("control: offline training continued", fontsize=9)
        ax.set_xlabel("offline updates after the hand-over")
        ax.legend(fontsize=7)
    for ax, r in zip(axes.ravel(), results):
        x = np.asarray(r["checkpoint_steps"])
        m, se = np.asarray(r["mean_scores"]), np.asarray(r["se"])
        for i in range(m.shape[1]):
            (line,) = ax.plot(x, m[:, i], marker="o", label=f"seed {i}: drop {r['paired_drop'][i]:.1f} "
                              f"+- {r['paired_se'][i]:.1f} (protocol {r['protocol_drop'][i]:.1f})")
            ax.fill_between(x, m[:, i] - se[:, i], m[:, i] + se[:, i], color=line.get_color(), alpha=0.2)
        ax.set_title(r["label"], fontsize=9)
        ax.set_xlabel("online step (0 = hand-over)")
        ax.set_ylabel(f"{value_name}, {r['episodes']} common episodes")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "transfer_check.png"), dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # orbax warns about every checkpoint's optional metadata file
    tune_host_allocator()
    if not _WORKDIRS.value or not _OUT.value:
        fail("give --workdirs and --out")
    if _EPISODES.value < 2:
        fail(f"--episodes must be >= 2 (the paired drop's standard error), got {_EPISODES.value}")
    if _EVAL_SEED.value < 0:
        fail(f"--eval_seed must be >= 0 (environments take non-negative reset seeds), got {_EVAL_SEED.value}")
    try:
        workdirs, default_labels = (list(x) for x in zip(*ls.expand_runs(_WORKDIRS.value)))
    except ls.LandscapeInputError as e:
        fail(str(e))
    labels = _LABELS.value or default_labels
    if len(labels) != len(workdirs):
        fail(f"--labels: {len(labels)} labels for {len(workdirs)} workdirs"
             + (f" ({', '.join(workdirs)})" if len(workdirs) != len(_WORKDIRS.value) else ""))
    earlier = earlier_outputs(_OUT.value, OUTPUTS, _OVERWRITE.value)  # before the evaluations
    try:
        runs = workdirs + ([_CONTINUATION.value] if _CONTINUATION.value else [])
        configs = {wd: ls.read_run_config(wd) for wd in runs}
        env_fn, value, value_name = ls.evaluation_environment(configs)
        results = [_check(wd, label, env_fn, value, value_name) for wd, label in zip(workdirs, labels)]
        control = _control(_CONTINUATION.value, results, configs, env_fn, value) if _CONTINUATION.value else None
    except ls.LandscapeInputError as e:
        fail(str(e))
    remove_outputs(_OUT.value, earlier)
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "transfer_check.json"), "w") as f:
        json.dump(results, f, indent=1)
    if control is not None:
        with open(os.path.join(_OUT.value, "continuation_control.json"), "w") as f:
            json.dump(control, f, indent=1)
    _plot(results, control, value_name, _OUT.value)
    for r in results:
        print(f"{r['label']}, first {r['window_steps']} online steps, {r['episodes']} common episodes:")
        for i in range(len(r["paired_drop"])):
            print(f"  seed {i}: protocol drop {r['protocol_drop'][i]:5.1f} | paired drop {r['paired_drop'][i]:5.1f} "
                  f"(offline - worst {r['paired_diff'][i]:+6.1f} +- {r['paired_se'][i]:.1f} at step "
                  f"{r['paired_worst_step'][i]}) | unchanged policy: P(protocol drop > {_THRESHOLD.value:g}) = "
                  f"{r['null_drop_rate'][i]:.2f}")
    if control is not None:
        for n, c in (control.get("by_updates") or {str(control["updates"]): control}).items():
            runs_n = ", ".join(r["label"] for r in results if r["control_updates"] == int(n))
            print(f"control: the offline phase continued for {n} updates after the hand-over "
                  f"(step {control['handover_step']}), {_EPISODES.value} common episodes"
                  + (f" (the window of {runs_n})" if "by_updates" in control else "") + ":")
            for i in range(len(c["paired_drop"])):
                print(f"  seed {i}: paired drop {c['paired_drop'][i]:5.1f} +- {c['paired_se'][i]:.1f} "
                      f"(worst at offline step {c['paired_worst_step'][i]})")


if __name__ == "__main__":
    run_cli(main)
