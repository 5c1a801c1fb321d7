"""Run-level metrics: normalised score, transfer drop, normalised regret, CORL's success regret,
and aggregates over runs (interquartile mean with stratified-bootstrap confidence intervals).

The aggregates follow Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical
Precipice" (NeurIPS 2021) and are computed with their library, ``rliable``.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from smac_jax.data.dataset import normalized_score  # noqa: F401  (defined with the datasets' reference scores)
from smac_jax.training.summary import transfer_drop  # noqa: F401  (a run metric, computed by the pipeline)


def regrets_per_env(scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Each run's regret: ``{env: {method: array (seeds,)}}``, seed ``i``'s mean over its online
    evaluations of 1 - its min-max normalised score (normalised per environment by the smallest and
    largest score any method reached there, as in :func:`normalized_regret`)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for env, by_method in scores.items():
        allv = np.concatenate([np.asarray(v, np.float64).ravel() for v in by_method.values()])
        lo, hi = np.nanmin(allv), np.nanmax(allv)
        span = hi - lo if hi > lo else 1.0
        out[env] = {method: np.atleast_1d(np.nanmean(1.0 - (np.asarray(v, np.float64) - lo) / span, axis=-1))
                    for method, v in by_method.items()}
    return out


def _run_regrets_per_env(scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """``{method: [regret per seed, one array per environment]}``, the environments in input order."""
    per_method: dict[str, list[np.ndarray]] = {}
    for by_method in regrets_per_env(scores).values():
        for method, r in by_method.items():
            per_method.setdefault(method, []).append(r)
    return per_method


def normalized_regret(scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
    """The SMAC table's regret.

    ``scores[env][method]`` is an array (seeds, online evaluations). Per environment, scores are
    min-max normalised by the smallest and largest score any method reached there; a run's regret
    is the mean over its evaluations of (1 - normalised score); averaged over seeds, then over
    environments. Returns ``{method: regret}``. An environment in which every score is the same
    does not separate the methods: its span is taken as 1, so it adds a regret of 1 to every method.
    """
    return {m: float(np.mean([r.mean() for r in per_env])) for m, per_env in _run_regrets_per_env(scores).items()}


def run_regrets(scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The per-run regrets behind :func:`normalized_regret`, as ``{method: array (seeds, envs)}``.

    Entry ``[i, j]`` is seed ``i``'s regret in the ``j``-th environment of ``scores`` (same
    normalisation as :func:`normalized_regret`; its value is the mean over seeds, then over
    environments, of this matrix). A method must have the same number of seeds in every
    environment. Feed the result to :func:`aggregate` for an IQM with confidence intervals.
    """
    out = {}
    for method, per_env in _run_regrets_per_env(scores).items():
        if len({r.shape[0] for r in per_env}) != 1:
            raise ValueError(f"method {method!r} has different numbers of seeds across environments "
                             f"({[r.shape[0] for r in per_env]}); run_regrets needs a (seeds, envs) matrix")
        out[method] = np.stack(per_env, axis=1)
    return out


def corl_regret(successes) -> float | np.ndarray:
    """CORL's regret for sparse-success tasks: mean(1 - success) over the online training episodes.

    ``successes``: one entry per online training episode (bool or a success rate in [0, 1]), in a
    1-D array (one run; returns a float) or an array (..., episodes) (returns one regret per run).
    """
    s = np.asarray(successes, np.float64)
    if s.size == 0 or s.shape[-1] == 0:
        raise ValueError("corl_regret needs at least one online episode")
    if np.any(np.isnan(s)) or np.any((s < 0) | (s > 1)):
        raise ValueError("successes must lie in [0, 1] (booleans or success rates)")
    r = np.mean(1.0 - s, axis=-1)
    return float(r) if r.ndim == 0 else r


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float


def aggregate(scores: Mapping[str, np.ndarray] | np.ndarray, *, reps: int = 50_000, confidence: float = 0.95,
              seed: int = 0, method: str = "percentile", task_bootstrap: bool = False) -> dict[str, dict[str, Interval]]:
    """Interquartile mean and mean over runs and tasks, with stratified-bootstrap confidence intervals.

    ``scores``: ``{method: array (runs, tasks)}`` (a 1-D array is one task; a bare array is named
    ``"scores"``); the runs of a method may differ in number from another method's.

    * IQM = the 25%-trimmed mean of all runs x tasks values: the mean of the middle 50% after
      sorting (``rliable.metrics.aggregate_iqm``).
    * mean = the plain mean of the same values (``rliable.metrics.aggregate_mean``).
    * Confidence intervals: stratified bootstrap (``rliable.library.get_interval_estimates``):
      every replicate resamples the runs with replacement independently within each task (and the
      tasks too when ``task_bootstrap``); ``reps`` replicates, ``confidence`` coverage, interval
      ``method`` "percentile" (default), "basic", "bc" or "bca". Both statistics share the
      replicates; ``seed`` makes the intervals reproducible (numpy's global RNG is left as it was).

    Returns ``{method: {"iqm": Interval, "mean": Interval}}``. Works on any per-run number:
    normalised scores, :func:`run_regrets`, or :func:`corl_regret` per run.
    """
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    if isinstance(scores, np.ndarray):
        scores = {"scores": scores}
    matrices = {}
    for name, v in scores.items():
        v = np.asarray(v, np.float64)
        v = v[:, None] if v.ndim == 1 else v
        if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
            raise ValueError(f"scores[{name!r}] must be a non-empty (runs, tasks) array, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"scores[{name!r}] holds NaN or inf values")
        matrices[name] = v

    def stats(x):
        return np.array([rly_metrics.aggregate_iqm(x), rly_metrics.aggregate_mean(x)])

    # rliable's StratifiedBootstrap draws its resampling indices from numpy's global RNG (it does
    # not use its random_state argument), so the global RNG is seeded for the call and restored.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        points, intervals = rly.get_interval_estimates(
            matrices, stats, method=method, task_bootstrap=task_bootstrap, reps=reps,
            confidence_interval_size=confidence)
    finally:
        np.random.set_state(saved)
    return {name: {stat: Interval(float(points[name][i]), float(intervals[name][0, i]), float(intervals[name][1, i]))
                   for i, stat in enumerate(("iqm", "mean"))}
            for name in matrices}


def aggregate_regret(scores: Mapping[str, Mapping[str, np.ndarray]], **kwargs) -> dict[str, dict[str, Interval]]:
    """:func:`aggregate` of :func:`run_regrets`: IQM and mean regret over (seed, environment) runs with
    stratified-bootstrap confidence intervals (the environments are the tasks). ``kwargs`` go to
    :func:`aggregate`."""
    return aggregate(run_regrets(scores), **kwargs)
