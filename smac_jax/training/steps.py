"""The jitted, seed-vmapped, scan-fused update programs the training loops dispatch.

Every function returned here takes states with a leading seed axis. Keys are per seed and
derived from the global step (``jax.random.fold_in``), so a run resumed from a checkpoint
draws exactly the minibatches an uninterrupted run would have drawn.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.data import replay
from smac_jax.types import Transitions


def _mean_metrics(ms):
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), ms)


def make_offline_step(learner, n_updates: int):
    """``(states, data, seed_keys, step) -> (states, metrics)``: ``n_updates`` updates per seed,
    each on a fresh uniform minibatch of the shared offline ``data``; metrics averaged over the chunk."""
    bs = learner.config.batch_size

    def per_seed(state, data: Transitions, seed_key, step):
        keys = jax.random.split(jax.random.fold_in(seed_key, step), n_updates)

        def body(st, k):
            k_b, k_u = jax.random.split(k)
            st, m = learner.update(st, replay.sample_transitions(data, k_b, bs), k_u)
            return st, m

        state, ms = jax.lax.scan(body, state, keys)
        return state, _mean_metrics(ms)

    return jax.jit(jax.vmap(per_seed, in_axes=(0, None, 0, None)), donate_argnums=0)


def make_online_step(learner, utd: int, mixing_ratio: float | None, train: bool):
    """One environment step's device work for every seed, in one dispatch: insert the last
    transition, ``utd`` updates (if ``train``) on minibatches drawn after the insert, and the next
    exploratory action.

    ``(states, buffers, transition, obs, offline, seed_keys, step) -> (states, buffers, actions, metrics)``

    ``transition`` is :class:`Transitions` with a leading seed axis, or its rows already packed
    (``replay.pack``); host (NumPy) transitions are packed on the host, so they travel as one
    array. States and buffers are donated: the insert writes one row in place.
    """
    bs = learner.config.batch_size

    def per_seed(state, buffer, row, obs, offline, seed_key, step):
        buffer = replay.insert(buffer, row)
        k = jax.random.fold_in(seed_key, step)
        k_act, k_up = jax.random.split(k)
        metrics = {}
        if train:
            def body(st, kk):
                k_b, k_u = jax.random.split(kk)
                if mixing_ratio is None:
                    batch = replay.sample(buffer, k_b, bs)
                else:
                    batch = replay.sample_mixed(buffer, offline, k_b, bs, mixing_ratio)
                return learner.update(st, batch, k_u)

            state, ms = jax.lax.scan(body, state, jax.random.split(k_up, utd))
            metrics = _mean_metrics(ms)
        action = learner.act(state, obs, k_act, False)
        return state, buffer, action, metrics

    program = jax.jit(jax.vmap(per_seed, in_axes=(0, 0, 0, 0, None, 0, None)), donate_argnums=(0, 1))

    def step(states, buffers, transition, obs, offline, seed_keys, step_):
        if isinstance(transition, Transitions) and isinstance(transition.reward, np.ndarray):
            transition = replay.pack(transition, np)
        if mixing_ratio is None:
            offline = None  # not read: keep its leaves out of the dispatch
        return program(states, buffers, transition, obs, offline, seed_keys, step_)

    step.program = program  # the jitted program, for ahead-of-time compilation
    return step


def make_act_step(learner):
    """``(states, obs, seed_keys, step) -> actions``: exploratory actions, no insert, no update."""

    def per_seed(state, obs, seed_key, step):
        k_act, _ = jax.random.split(jax.random.fold_in(seed_key, step))
        return learner.act(state, obs, k_act, False)

    return jax.jit(jax.vmap(per_seed, in_axes=(0, 0, 0, None)))


def unalias(tree):
    """A copy of ``tree`` in which no two leaves share a device buffer.

    Initial states alias arrays (a target network starts as the very same array as its online
    network); the step functions donate their inputs, and XLA refuses to donate one buffer twice.
    """
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
