"""A run's summary: final scores per seed and the transfer drop (docs/algorithms.md, "Metrics")."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from smac_jax.errors import ArgumentError
from smac_jax.training.logger import MetricsLog


#: The transfer drop's window: the first this fraction of the online phase (docs/algorithms.md, Metrics).
DROP_WINDOW = 0.1


def transfer_drop(offline_final: float, online_steps: Sequence[int], online_scores: Sequence[float],
                  online_total_steps: int, window: float = DROP_WINDOW) -> float:
    """max(0, S_off - min of the online evaluations in the first ``window`` of the online phase).

    Evaluations at steps ``<= window * online_total_steps`` count (the evaluation right after
    hand-over, at step 0, included)."""
    steps = np.asarray(online_steps)
    scores = np.asarray(online_scores, np.float64)
    if steps.shape != scores.shape or steps.ndim != 1:
        raise ArgumentError(f"transfer_drop: online_steps has shape {steps.shape} and online_scores {scores.shape}: "
                            "one score per evaluation step expected")
    early = scores[steps <= window * online_total_steps]
    if early.size == 0:
        raise ValueError("no online evaluation falls in the first "
                         f"{window:.0%} of the online phase; evaluate more often")
    return float(max(0.0, offline_final - early.min()))


def drop_window_warning(online_steps: Sequence[int], online_total_steps: int, learning_starts: int,
                        window: float = DROP_WINDOW) -> str | None:
    """Why a run's transfer drop measures nothing, or None: when no online evaluation after the
    first update (step > ``learning_starts``) falls in the drop's window, the drop only compares
    evaluations of the handed-over policy. None as well for a run without online updates
    (``online_total_steps <= learning_starts``, e.g. a sweep's pretrain)."""
    if online_total_steps <= learning_starts:
        return None
    end = window * online_total_steps
    steps = np.asarray(online_steps)
    if ((steps > learning_starts) & (steps <= end)).any():
        return None
    return (f"no online evaluation after learning starts (step {learning_starts}) falls in the drop's window "
            f"(the first {end:g} steps), so the transfer drop compares evaluations of the handed-over policy "
            f"only; evaluate more often or check the drop with experiments/transfer_check.py --window_steps")


def summarize(log: MetricsLog, config, score_available: bool, reference: dict | None = None) -> dict:
    """The run's summary; ``reference``: the reference returns its normalised scores use
    (``{"min", "max", "source"}``), recorded as ``score_reference``."""
    key = "eval_score" if score_available else "eval_return"
    off_steps, off = log.evaluations("offline", key)
    on_steps, on = log.evaluations("online", key)
    label = ("success rate (%)" if config.dataset.get("reward", "env") == "success" else
             "normalised score" if score_available else "evaluation return")
    out: dict[str, Any] = {"metric": key, "metric_label": label, "offline_learner": config.offline.learner,
                           "online_learner": config.online.learner, "dataset": config.dataset.id}
    if reference is not None:
        out["score_reference"] = reference
    if off.size:
        out["offline_final"] = off[:, -1].tolist()
        out["offline_final_mean"] = float(np.mean(off[:, -1]))
    if on.size:
        out["online_final"] = on[:, -1].tolist()
        out["online_final_mean"] = float(np.mean(on[:, -1]))
        _, on_ret = log.evaluations("online", "eval_return")
        out["online_final_return_mean"] = float(np.mean(on_ret[:, -1]))
    _, episodes = log.evaluations("online", "train_episodes")
    if episodes.size and np.all(episodes[:, -1] > 0):  # a task that reports success (CORL's regret)
        _, successes = log.evaluations("online", "train_successes")
        # mean(1 - success) over every training episode (smac_jax.analysis.metrics.corl_regret)
        out["corl_regret"] = [float(1.0 - s / e) for s, e in zip(successes[:, -1], episodes[:, -1])]
        out["corl_regret_mean"] = float(np.mean(out["corl_regret"]))
    if off.size and on.size and score_available:
        drops = [transfer_drop(off[i, -1], on_steps, on[i], config.online.steps) for i in range(on.shape[0])]
        out["transfer_drop"] = drops
        out["transfer_drop_mean"] = float(np.mean(drops))
        warning = drop_window_warning(on_steps, config.online.steps, config.online.learning_starts)
        if warning:
            out["transfer_drop_warning"] = warning
        elif config.online.steps <= config.online.learning_starts:  # a pretrain, or learning never started
            out["transfer_drop_note"] = ("no online update ran (online.steps <= online.learning_starts): the drop "
                                         "compares the handed-over policy's evaluations with the offline ones, i.e. "
                                         "the hand-over itself and evaluation noise")
    return out


def write_json_atomic(path: str, obj) -> None:
    """``obj`` as JSON at ``path``, written whole or not at all (a kill mid-write leaves the old file)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
