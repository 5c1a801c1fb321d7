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


def seed_vmap(fn, in_axes):
    """``jax.vmap(fn, in_axes)`` over the seed axis (outputs batched on axis 0), except that a
    seed axis of size 1 is squeezed inside the program: ``fn`` runs on the single seed's arrays
    and its outputs get the axis back. The two are the same computation; the squeezed one avoids
    XLA CPU's slow batched reductions over a size-1 leading axis (a LayerNorm critic's gradient
    took twice as long, docs/README.md, "Against JAX-CORL")."""
    batched = jax.vmap(fn, in_axes=in_axes)

    def call(*args):
        sizes = {leaf.shape[0] for a, ax in zip(args, in_axes) if ax == 0 for leaf in jax.tree.leaves(a)}
        if sizes != {1}:
            return batched(*args)
        squeezed = [jax.tree.map(lambda x: x[0], a) if ax == 0 else a for a, ax in zip(args, in_axes)]
        return jax.tree.map(lambda x: jnp.expand_dims(x, 0), fn(*squeezed))

    return call


def _mean_metrics(ms):
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), ms)


def make_offline_step(learner, n_updates: int):
    """``(states, data, seed_keys, step) -> (states, metrics)``: ``n_updates`` updates per seed,
    each on a fresh uniform minibatch of the shared offline ``data``; metrics averaged over the chunk.

    For a learner with ``update_period`` p > 1 (TD3's delayed actor) and ``n_updates`` a multiple
    of p, the program runs the updates p at a time through ``learner.update_phase`` when every
    seed's ``state.step`` is a multiple of p (always, in the pipeline's offline phase), and
    through ``learner.update`` otherwise: the same updates, without computing what a phase
    discards. Metrics of work done only at some phases average those phases."""
    bs = learner.config.batch_size
    period = learner.update_period

    def per_seed(state, data: Transitions, seed_key, step):
        keys = jax.random.split(jax.random.fold_in(seed_key, step), n_updates)

        def body(st, k):
            k_b, k_u = jax.random.split(k)
            st, m = learner.update(st, replay.sample_transitions(data, k_b, bs), k_u)
            return st, m

        state, ms = jax.lax.scan(body, state, keys)
        return state, _mean_metrics(ms)

    def per_seed_phased(state, data: Transitions, seed_key, step):
        keys = jax.random.split(jax.random.fold_in(seed_key, step), n_updates)

        def body(st, ks):
            phase_metrics = []
            for phase in range(period):
                k_b, k_u = jax.random.split(ks[phase])
                st, m = learner.update_phase(st, replay.sample_transitions(data, k_b, bs), k_u, phase)
                phase_metrics.append(m)
            names = {n for m in phase_metrics for n in m}
            return st, {n: jnp.mean(jnp.stack([m[n] for m in phase_metrics if n in m])) for n in names}

        state, ms = jax.lax.scan(body, state, keys.reshape(n_updates // period, period, *keys.shape[1:]))
        return state, _mean_metrics(ms)

    plain = seed_vmap(per_seed, (0, None, 0, None))
    if period == 1 or n_updates % period:
        return jax.jit(plain, donate_argnums=0)
    phased = seed_vmap(per_seed_phased, (0, None, 0, None))

    def run(states, data, seed_keys, step):
        aligned = jnp.all(states.step % period == 0)  # one predicate for every seed: a real branch
        return jax.lax.cond(aligned, phased, plain, states, data, seed_keys, step)

    return jax.jit(run, donate_argnums=0)


def _online_per_seed(learner, utd: int, mixing_ratio: float | None, train: bool):
    """Per seed, one environment step's device work: insert the transition, ``utd`` updates (if
    ``train``) on minibatches drawn after the insert, then the next exploratory action.

    ``(state, buffer, row, obs, offline, seed_key, step) -> (state, buffer, action, metrics)``
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

    return seed_vmap(per_seed, (0, 0, 0, 0, None, 0, None))


def make_online_step(learner, utd: int, mixing_ratio: float | None, train: bool):
    """One environment step's device work for every seed, in one dispatch (the environment is
    stepped by the caller): insert the last transition, ``utd`` updates (if ``train``), and the
    next exploratory action.

    ``(states, buffers, transition, obs, offline, seed_keys, step) -> (states, buffers, actions, metrics)``

    ``transition`` is :class:`Transitions` with a leading seed axis, or its rows already packed
    (``replay.pack``); host (NumPy) transitions are packed on the host, so they travel as one
    array. States and buffers are donated: the insert writes one row in place. For many steps in
    one dispatch, with the environment stepped from inside the program, see
    :func:`make_online_loop`.
    """
    program = jax.jit(_online_per_seed(learner, utd, mixing_ratio, train), donate_argnums=(0, 1))

    def step(states, buffers, transition, obs, offline, seed_keys, step_):
        if isinstance(transition, Transitions) and isinstance(transition.reward, np.ndarray):
            transition = replay.pack(transition, np)
        if mixing_ratio is None:
            offline = None  # not read: keep its leaves out of the dispatch
        return program(states, buffers, transition, obs, offline, seed_keys, step_)

    step.program = program  # the jitted program, for ahead-of-time compilation
    return step


def make_online_loop(learner, env_step, n_seeds: int, utd: int, mixing_ratio: float | None, train: bool,
                     lean_callback: bool = False):
    """Many environment steps in one dispatch: the environments are stepped from inside the
    program (an ordered host call), so a chunk of steps costs one dispatch instead of one per
    step, with exactly the per-step semantics of :func:`make_online_step`.

    ``env_step(actions) -> (rows, next_obs)`` is the host side: it applies ``actions``
    (``(n_seeds, act_dim)``) and returns the packed transitions (``(n_seeds, row_width)``, see
    ``replay.pack``) and the observations to act on, e.g.
    :meth:`~smac_jax.training.online.OnlineCollector.step_packed`.

    ``(states, buffers, actions, offline, seed_keys, start, n) -> (states, buffers, actions, metrics)``
    runs environment steps ``s = start + 1 .. start + n`` (``n`` may change between calls
    without recompiling): for each, step the environments with ``actions``, then insert, update
    and act as :func:`make_online_step` does with step index ``s``. ``metrics`` are the last step's.
    An exception raised by ``env_step`` is re-raised by the returned function after the dispatch.

    ``lean_callback``: step the environments through :func:`smac_jax.training.host_call.host_call`
    (default), or through ``jax.experimental.io_callback`` (slower on CPU: it builds JAX arrays
    of the operands inside every call; kept for comparison, see ``experiments/benchmark.py``).
    """
    from smac_jax.training.host_call import host_call

    per_seed = _online_per_seed(learner, utd, mixing_ratio, train)
    obs_dim, act_dim = learner.obs_dim, learner.act_dim
    shapes = (jax.ShapeDtypeStruct((n_seeds, replay.row_width(obs_dim, act_dim)), jnp.float32),
              jax.ShapeDtypeStruct((n_seeds, obs_dim), jnp.float32))
    failure: list[BaseException] = []
    placeholder = tuple(np.zeros(s.shape, np.float32) for s in shapes)

    def host_step(actions):
        if not failure:  # once the environment failed in a chunk, the rest of it is skipped
            try:
                rows, obs = env_step(np.array(actions))  # a copy: the operand may view a program buffer
                return np.asarray(rows, np.float32), np.asarray(obs, np.float32)
            except BaseException as e:  # noqa: BLE001 - re-raised on the host after the dispatch
                failure.append(e)
        return placeholder

    def run(states, buffers, actions, offline, seed_keys, start, n):
        def one_step(i, carry):
            states, buffers, actions, _ = carry
            rows, obs = host_call(host_step, shapes, actions, lean=lean_callback)
            return per_seed(states, buffers, rows, obs, offline, seed_keys, start + i + 1)

        metrics0 = jax.eval_shape(lambda: per_seed(states, buffers, jnp.zeros(shapes[0].shape), jnp.zeros(
            shapes[1].shape), offline, seed_keys, start)[3])
        metrics0 = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics0)
        return jax.lax.fori_loop(0, n, one_step, (states, buffers, actions, metrics0))

    program = jax.jit(run, donate_argnums=(0, 1))

    def loop(states, buffers, actions, offline, seed_keys, start, n):
        if mixing_ratio is None:
            offline = None
        out = program(states, buffers, actions, offline, seed_keys, start, n)
        jax.block_until_ready(out[2])
        if failure:
            err = failure.pop()
            failure.clear()
            raise err
        return out

    loop.program = program
    return loop


def make_act_step(learner):
    """``(states, obs, seed_keys, step) -> actions``: exploratory actions, no insert, no update."""

    def per_seed(state, obs, seed_key, step):
        k_act, _ = jax.random.split(jax.random.fold_in(seed_key, step))
        return learner.act(state, obs, k_act, False)

    return jax.jit(seed_vmap(per_seed, (0, 0, 0, None)))


def unalias(tree):
    """A copy of ``tree`` in which no two leaves share a device buffer.

    Initial states alias arrays (a target network starts as the very same array as its online
    network); the step functions donate their inputs, and XLA refuses to donate one buffer twice.
    """
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
