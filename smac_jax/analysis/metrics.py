"""Run-level metrics of SPEC 6: normalised score, transfer drop, normalised regret."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def normalized_score(returns, ref_min: float, ref_max: float):
    """100 (R - R_min) / (R_max - R_min)."""
    if ref_min is None or ref_max is None or ref_max == ref_min:
        raise ValueError(f"normalised score needs distinct ref_min_score/ref_max_score, got {ref_min}, {ref_max}")
    return 100.0 * (np.asarray(returns, np.float64) - ref_min) / (ref_max - ref_min)


def transfer_drop(offline_final: float, online_steps: Sequence[int], online_scores: Sequence[float],
                  online_total_steps: int, window: float = 0.1) -> float:
    """max(0, S_off - min of the online evaluations in the first ``window`` of the online phase).

    Evaluations at steps ``<= window * online_total_steps`` count (the evaluation right after
    hand-over, at step 0, included)."""
    steps = np.asarray(online_steps)
    scores = np.asarray(online_scores, np.float64)
    early = scores[steps <= window * online_total_steps]
    if early.size == 0:
        raise ValueError("no online evaluation falls in the first "
                         f"{window:.0%} of the online phase; evaluate more often")
    return float(max(0.0, offline_final - early.min()))


def normalized_regret(scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
    """The SMAC table's regret.

    ``scores[env][method]`` is an array (seeds, online evaluations). Per environment, scores are
    min-max normalised by the smallest and largest score any method reached there; a run's regret
    is the mean over its evaluations of (1 - normalised score); averaged over seeds, then over
    environments. Returns ``{method: regret}``.
    """
    per_method: dict[str, list[float]] = {}
    for env, by_method in scores.items():
        allv = np.concatenate([np.asarray(v, np.float64).ravel() for v in by_method.values()])
        lo, hi = np.nanmin(allv), np.nanmax(allv)
        span = hi - lo if hi > lo else 1.0
        for method, v in by_method.items():
            norm = (np.asarray(v, np.float64) - lo) / span
            per_method.setdefault(method, []).append(float(np.nanmean(1.0 - norm, axis=-1).mean()))
    return {m: float(np.mean(v)) for m, v in per_method.items()}
