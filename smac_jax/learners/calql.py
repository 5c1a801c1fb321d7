"""Calibrated Q-Learning, Cal-QL (Nakamoto et al., 2023); docs/algorithms.md, Cal-QL.

CQL (:mod:`smac_jax.learners.cql`) with one change: inside the conservative penalty the Q values
of the policy actions, the pi(s) and the pi(s') samples (both evaluated at s), are lower-bounded
by the Monte-Carlo return of the transition's dataset trajectory,

    Q_i(s, a~pi)  ->  max(Q_i(s, a~pi), V_mc(s)),    V_mc(s) = batch.mc_return,

before the importance correction and the logsumexp (as in the Cal-QL reference code). The uniform
samples and the Q(s, a_D) term are untouched. The bound pushes the penalty's gradient off policy
actions whose Q value is already below the behaviour policy's return, so the learned Q stays
calibrated (not below V_mu) while remaining conservative.

``batch.mc_return`` is the discounted return-to-go of the *scaled* reward (the dataset's
``gamma``, ``reward_scale`` and ``reward_bias``), i.e. in the critic's units; the dataset's
``gamma`` should equal the learner's.

Online Cal-QL is this same learner used in the online phase with the ``mix`` replay
initialisation (offline and online buffers sampled with ``mixing_ratio``; the configs set that).
Online transitions carry ``mc_return = -inf`` (``smac_jax.data.replay.NO_MC_RETURN``): for them
max(Q, -inf) = Q, so the bound is inactive and the loss is plain CQL, with a finite value and
gradient; the offline rows of a mixed batch keep their bound.

Defaults are CQL's (``cql_alpha`` 5.0, 10 + 10 + 10 samples, ``cql_temp`` 1, no Lagrange,
no max-backup, no entropy in the backup).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from smac_jax.learners import cql, sac
from smac_jax.learners.base import checked_loss, register, sg
from smac_jax.types import Transitions


def calql_lower_bound(q: jax.Array, mc_return: jax.Array) -> jax.Array:
    """max(Q(s, a~pi), V_mc(s)), elementwise.

    ``q``: ``(..., B, n)`` Q values of n policy samples per state; ``mc_return``: ``(B,)`` (no
    gradient; ``-inf`` = no bound known, which leaves Q unchanged). Returns ``q``'s shape.
    """
    return jnp.maximum(q, sg(mc_return)[:, None])


def _bound(q, batch: Transitions):
    bounded = calql_lower_bound(q, batch.mc_return)
    # Fraction of policy-action Q values lifted by the bound (a Cal-QL diagnostic).
    return bounded, {"calql_bound_rate": jnp.mean(q < batch.mc_return[:, None])}


@checked_loss
def critic_loss(params, batch: Transitions, key, config, next_q_fn=sac.target_critic_q):
    """CQL's critic loss with the Cal-QL lower bound on the pi(s) / pi(s') sample Q values."""
    return cql.conservative_critic_loss(params, batch, key, config, _bound, next_q_fn)


@register("calql")
class CalQL(cql.CQL):
    reads_mc_return = True  # its lower bound
    critic_loss_fn = staticmethod(critic_loss)
