"""Functional, device-resident replay: a ring buffer with jit-able insert and sample.

All functions are pure and written for one seed; the online loop ``jax.vmap``s them over the
seed axis. The offline dataset is a plain :class:`~smac_jax.types.Transitions` shared by all
seeds (``sample_transitions``). Replay initialisations (SPEC 2, step 3) are built by
:func:`init_replay`: ``empty``, ``full`` (the whole dataset), ``mix`` (separate offline and online
buffers sampled with ``mixing_ratio``) and ``top_n`` (the N highest-return trajectories).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.types import Transitions

REPLAY_INITS = ("empty", "full", "mix", "top_n")
#: mc_return stored for online transitions: no Monte-Carlo lower bound is known for them.
NO_MC_RETURN = -np.inf


@flax.struct.dataclass
class ReplayBuffer:
    data: Transitions
    ptr: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[-1]


def empty_buffer(obs_dim: int, act_dim: int, capacity: int) -> ReplayBuffer:
    z = lambda *s: jnp.zeros((capacity, *s), jnp.float32)
    data = Transitions(
        obs=z(obs_dim), action=z(act_dim), reward=z(), next_obs=z(obs_dim), terminated=z(), truncated=z(),
        episode=jnp.full((capacity,), -1, jnp.int32), rtg=z(), mc_return=jnp.full((capacity,), NO_MC_RETURN, jnp.float32),
        traj_return=z(),
    )
    return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, t: Transitions) -> ReplayBuffer:
    """Insert ONE transition (fields without a row axis) at the ring pointer."""
    data = jax.tree.map(lambda d, x: d.at[buffer.ptr].set(x.astype(d.dtype)), buffer.data, t)
    cap = buffer.capacity
    return ReplayBuffer(data, (buffer.ptr + 1) % cap, jnp.minimum(buffer.size + 1, cap))


def insert_many(buffer: ReplayBuffer, t: Transitions) -> ReplayBuffer:
    """Insert a block of rows starting at the pointer, wrapping around the ring like repeated
    :func:`insert` calls would (at most ``capacity`` rows)."""
    n = t.reward.shape[0]
    if n > buffer.capacity:
        raise ValueError(f"cannot insert {n} rows into a replay buffer of capacity {buffer.capacity}")
    cap = buffer.capacity
    idx = (buffer.ptr + jnp.arange(n)) % cap
    data = jax.tree.map(lambda d, x: d.at[idx].set(jnp.asarray(x, d.dtype)), buffer.data, t)
    return ReplayBuffer(data, (buffer.ptr + n) % cap, jnp.minimum(buffer.size + n, cap))


def sample_transitions(data: Transitions, key, batch_size: int, size=None) -> Transitions:
    """Uniform minibatch from the first ``size`` rows of ``data`` (all rows if None)."""
    n = data.reward.shape[0] if size is None else size
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(n, 1))
    return jax.tree.map(lambda x: x[idx], data)


def sample(buffer: ReplayBuffer, key, batch_size: int) -> Transitions:
    return sample_transitions(buffer.data, key, batch_size, buffer.size)


def sample_mixed(buffer: ReplayBuffer, offline: Transitions, key, batch_size: int, mixing_ratio: float) -> Transitions:
    """``round(mixing_ratio * batch_size)`` rows from the offline data, the rest from the buffer."""
    n_off = int(round(mixing_ratio * batch_size))
    k1, k2 = jax.random.split(key)
    on = sample(buffer, k1, batch_size - n_off)
    if n_off == 0:
        return on
    off = sample_transitions(offline, k2, n_off)
    return jax.tree.map(lambda a, b: jnp.concatenate([b, a], 0), on, off)


def top_n_transitions(data: Transitions, n: int) -> Transitions:
    """The transitions of the ``n`` highest-return trajectories (host-side, numpy)."""
    episode = np.asarray(data.episode)
    traj_ret = np.asarray(data.traj_return)
    ids, first = np.unique(episode, return_index=True)
    best = ids[np.argsort(-traj_ret[first], kind="stable")[:n]]
    mask = np.isin(episode, best)
    return jax.tree.map(lambda x: np.asarray(x)[mask], data)


def init_replay(mode: str, offline: Transitions, obs_dim: int, act_dim: int, online_capacity: int, top_n: int = 0):
    """The online buffer for one seed, per replay initialisation ``mode``.

    ``full`` and ``top_n`` copy dataset rows into the buffer (capacity grows by their count, so
    online data never overwrites them before ``online_capacity`` steps); ``empty`` and ``mix`` start
    empty (``mix`` samples the offline data separately, see :func:`sample_mixed`).
    """
    if mode not in REPLAY_INITS:
        raise ValueError(f"replay init must be one of {REPLAY_INITS}, got {mode!r}")
    if mode in ("empty", "mix"):
        return empty_buffer(obs_dim, act_dim, online_capacity)
    rows = offline if mode == "full" else top_n_transitions(offline, top_n)
    n = int(np.asarray(rows.reward).shape[0])
    buf = empty_buffer(obs_dim, act_dim, online_capacity + n)
    return insert_many(buf, rows) if n else buf
