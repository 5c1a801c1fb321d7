"""Is a transfer drop real or evaluation noise?

The protocol's transfer drop (:func:`smac_jax.training.summary.transfer_drop`) compares a few
n-episode evaluations, each from different start states. Two tools separate the policy's change
from that noise (docs/analysis.md, "Is the drop real?"):

* :func:`null_drop` -- the drop the protocol reports when the policy did not change at all: its
  evaluations resampled from one policy's per-episode scores. Its rate above the 5-point
  "smooth" threshold is the false-alarm rate of the criterion for that policy.
* :func:`paired_drop` -- the drop measured on saved checkpoints, every checkpoint evaluated from
  the same start states (common random numbers), so the start states cancel in the differences;
  with its standard error.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class NullDrop:
    """The protocol's drop for an unchanged policy: ``rate`` = P(drop > threshold), and the
    mean and 90th percentile of the drop, over ``reps`` resampled evaluations."""

    rate: float
    mean: float
    p90: float
    threshold: float
    n_episodes: int
    n_online_evals: int


def null_drop(episode_scores, n_episodes: int, n_online_evals: int, threshold: float = 5.0,
              reps: int = 20_000, seed: int = 0) -> NullDrop:
    """The transfer drop of a policy that does not change, as the protocol would measure it.

    ``episode_scores``: (E,) scores of one policy's episodes from independent start states (E
    large, e.g. 50). One protocol draw: the last offline evaluation and each of the
    ``n_online_evals`` early online evaluations (the one at hand-over included) is the mean of
    ``n_episodes`` episodes drawn with replacement; drop = max(0, S_off - min online). Returns
    the rate of drops above ``threshold`` and their mean and 90th percentile.
    """
    x = np.asarray(episode_scores, np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"null_drop needs at least 2 episode scores, got {x.size}")
    if n_episodes < 1 or n_online_evals < 1 or reps < 1:
        raise ValueError(f"n_episodes, n_online_evals and reps must be >= 1, got {n_episodes}, {n_online_evals}, {reps}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(reps, 1 + n_online_evals, n_episodes))].mean(-1)
    drops = np.maximum(0.0, means[:, 0] - means[:, 1:].min(1))
    return NullDrop(rate=float(np.mean(drops > threshold)), mean=float(drops.mean()),
                    p90=float(np.quantile(drops, 0.9)), threshold=float(threshold),
                    n_episodes=int(n_episodes), n_online_evals=int(n_online_evals))


@dataclasses.dataclass(frozen=True)
class PairedDrop:
    """Per seed: ``drop`` = max(0, offline mean - lowest checkpoint mean), ``worst`` = the index
    of that checkpoint, ``diff`` = offline mean - that checkpoint's mean (may be negative),
    ``se`` = the standard error of ``diff`` over the paired episodes; ``means`` (checkpoints,
    seeds) the checkpoints' mean scores, ``offline`` (seeds,) the offline mean."""

    drop: np.ndarray
    diff: np.ndarray
    se: np.ndarray
    worst: np.ndarray
    means: np.ndarray
    offline: np.ndarray


def paired_drop(offline_scores, online_scores) -> PairedDrop:
    """The transfer drop on common start states.

    ``offline_scores``: (seeds, E) scores of the last offline actor; ``online_scores``:
    (checkpoints, seeds, E) scores of the online actors saved in the drop's window (the actor at
    hand-over is the offline one), episode ``e`` of every actor started from the same state. The
    lowest checkpoint per seed defines the drop; its standard error is that of the mean of the E
    paired differences (offline - checkpoint).
    """
    off = np.asarray(offline_scores, np.float64)
    on = np.asarray(online_scores, np.float64)
    if off.ndim != 2 or on.ndim != 3 or on.shape[1:] != off.shape:
        raise ValueError(f"paired_drop needs offline (seeds, episodes) and online (checkpoints, seeds, episodes) "
                         f"with matching seeds and episodes, got {off.shape} and {on.shape}")
    if off.shape[1] < 2:
        raise ValueError("paired_drop needs at least 2 episodes per actor for a standard error")
    means = on.mean(-1)
    worst = means.argmin(0)
    seeds = np.arange(off.shape[0])
    d = off - on[worst, seeds]  # (seeds, E) paired differences at the worst checkpoint
    diff = d.mean(-1)
    se = d.std(-1, ddof=1) / np.sqrt(d.shape[-1])
    return PairedDrop(drop=np.maximum(0.0, diff), diff=diff, se=se, worst=worst, means=means, offline=off.mean(-1))
