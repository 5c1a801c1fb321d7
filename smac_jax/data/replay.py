"""Functional, device-resident replay: a ring buffer with jit-able insert and sample.

All functions are pure and written for one seed; the online loop ``jax.vmap``s them over the
seed axis. The offline dataset is a plain :class:`~smac_jax.types.Transitions` shared by all
seeds (``sample_transitions``). Replay initialisations (docs/algorithms.md, "Replay initialisations") are built by
:func:`init_replay`: ``empty``, ``full`` (the whole dataset), ``mix`` (separate offline and online
buffers sampled with ``mixing_ratio``) and ``top_n`` (the N highest-return trajectories).
"""
from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.errors import need_count
from smac_jax.types import Transitions

REPLAY_INITS = ("empty", "full", "mix", "top_n")
#: mc_return stored for online transitions: no Monte-Carlo lower bound is known for them.
NO_MC_RETURN = -np.inf


#: The fields of :class:`Transitions`, in the order they sit side by side in a buffer row.
FIELDS = tuple(f.name for f in dataclasses.fields(Transitions))
_VECTOR_FIELDS = ("obs", "action", "next_obs")
#: int32 fields stored as float32 values: exact for magnitudes below 2**24.
_INT_FIELDS = ("episode",)
_MAX_EXACT_INT = 2**24


def _columns(obs_dim: int, act_dim: int) -> dict[str, tuple[int, int]]:
    """Column range ``[lo, hi)`` of every field in a packed row."""
    out, lo = {}, 0
    for name in FIELDS:
        width = obs_dim if name in ("obs", "next_obs") else act_dim if name == "action" else 1
        out[name] = (lo, lo + width)
        lo += width
    return out


def row_width(obs_dim: int, act_dim: int) -> int:
    return 2 * obs_dim + act_dim + len(FIELDS) - len(_VECTOR_FIELDS)


def pack(t: Transitions, xp=jnp):
    """``Transitions`` (any leading axes) -> one float32 array ``(..., row_width)``.

    ``xp=np`` packs on the host, so that a transition reaches the device as one array."""
    parts = [xp.asarray(getattr(t, f), xp.float32) for f in FIELDS]
    lead = parts[FIELDS.index("reward")].shape
    return xp.concatenate([p.reshape(lead + (-1,)) for p in parts], axis=-1)


def unpack(rows: jax.Array, obs_dim: int, act_dim: int) -> Transitions:
    """Inverse of :func:`pack`: columns sliced out of ``rows`` (``(..., row_width)``)."""
    fields = {}
    for name, (lo, hi) in _columns(obs_dim, act_dim).items():
        x = rows[..., lo:hi] if name in _VECTOR_FIELDS else rows[..., lo]
        fields[name] = x.astype(jnp.int32) if name in _INT_FIELDS else x
    return Transitions(**fields)


@flax.struct.dataclass
class ReplayBuffer:
    """A ring buffer whose rows are packed transitions (:func:`pack`): ``rows`` is one
    ``(capacity, row_width)`` float32 array, so an insert writes one row of one array and a
    minibatch is one gather. (With one array per field, XLA merged the insert into the
    minibatch gather of the same column and copied whole columns every step.)"""

    rows: jax.Array
    ptr: jax.Array
    size: jax.Array
    obs_dim: int = flax.struct.field(pytree_node=False)
    act_dim: int = flax.struct.field(pytree_node=False)

    @property
    def capacity(self) -> int:
        return self.rows.shape[-2]

    @property
    def data(self) -> Transitions:
        """Every row (filled or not) as :class:`Transitions`."""
        return unpack(self.rows, self.obs_dim, self.act_dim)


def empty_buffer(obs_dim: int, act_dim: int, capacity: int) -> ReplayBuffer:
    cols = _columns(obs_dim, act_dim)
    rows = np.zeros((capacity, row_width(obs_dim, act_dim)), np.float32)
    rows[:, cols["episode"][0]] = -1
    rows[:, cols["mc_return"][0]] = NO_MC_RETURN
    return ReplayBuffer(jnp.asarray(rows), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), obs_dim, act_dim)


def _as_rows(t) -> jax.Array:
    """``t``: :class:`Transitions` or rows already packed (e.g. on the host, ``pack(t, np)``)."""
    return pack(t) if isinstance(t, Transitions) else jnp.asarray(t, jnp.float32)


def insert(buffer: ReplayBuffer, t) -> ReplayBuffer:
    """Insert ONE transition (fields without a row axis, or one packed row) at the ring pointer."""
    cap = buffer.capacity
    rows = jax.lax.dynamic_update_slice(buffer.rows, _as_rows(t)[None], (buffer.ptr, 0))
    return buffer.replace(rows=rows, ptr=(buffer.ptr + 1) % cap, size=jnp.minimum(buffer.size + 1, cap))


def insert_many(buffer: ReplayBuffer, t) -> ReplayBuffer:
    """Insert a block of rows starting at the pointer, wrapping around the ring like repeated
    :func:`insert` calls would (at most ``capacity`` rows)."""
    if isinstance(t, Transitions) and isinstance(t.episode, np.ndarray):
        ep = t.episode
        if ep.size and np.abs(ep).max() >= _MAX_EXACT_INT:
            raise ValueError(f"episode indices up to {np.abs(ep).max()} do not fit a replay row exactly "
                             f"(stored as float32: below {_MAX_EXACT_INT})")
    new = _as_rows(t)
    n, cap = new.shape[0], buffer.capacity
    if n > cap:
        raise ValueError(f"cannot insert {n} rows into a replay buffer of capacity {cap}")
    idx = (buffer.ptr + jnp.arange(n)) % cap
    return buffer.replace(rows=buffer.rows.at[idx].set(new), ptr=(buffer.ptr + n) % cap,
                          size=jnp.minimum(buffer.size + n, cap))


def sample_transitions(data: Transitions, key, batch_size: int, size=None) -> Transitions:
    """Uniform minibatch from the first ``size`` rows of ``data`` (all rows if None)."""
    batch_size = need_count(batch_size, "batch_size", "sample_transitions")
    with jax.named_scope("minibatch"):  # names the ops in profiles (experiments/profile_update.py)
        n = data.reward.shape[0] if size is None else size
        idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(n, 1))
        return jax.tree.map(lambda x: x[idx], data)


def sample(buffer: ReplayBuffer, key, batch_size: int) -> Transitions:
    """Uniform minibatch from the filled rows: one gather of packed rows, then unpacked."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return unpack(buffer.rows[idx], buffer.obs_dim, buffer.act_dim)


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
