"""The jitted, seed-vmapped, scan-fused update programs the training loops dispatch.

Every function returned here takes states with a leading seed axis. Keys are per seed and
derived from the global step (``jax.random.fold_in``), so a run resumed from a checkpoint
draws exactly the minibatches an uninterrupted run would have drawn.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from smac_jax.data import replay
from smac_jax.errors import ProtocolError, ShapeError, need_count
from smac_jax.types import Transitions


def seed_vmap(fn, in_axes):
    """``jax.vmap(fn, in_axes)`` over the seed axis (outputs batched on axis 0), except that a
    seed axis of size 1 is squeezed inside the program: ``fn`` runs on the single seed's arrays
    and its outputs get the axis back. The two are the same computation up to float32 rounding (XLA
    compiles another program for another number of lanes, as it does for any two lane counts); the
    squeezed one avoids XLA CPU's slow batched reductions over a size-1 leading axis (a LayerNorm
    critic's gradient took twice as long, docs/README.md, "Against JAX-CORL")."""
    batched = jax.vmap(fn, in_axes=in_axes)

    def call(*args):
        shapes = [jnp.shape(leaf) for a, ax in zip(args, in_axes) if ax == 0 for leaf in jax.tree.leaves(a)]
        if any(len(s) == 0 for s in shapes):
            raise ShapeError("a train state (or another per-seed argument) has no leading seed axis: stack one "
                             "state per seed, e.g. jax.vmap(learner.init)(jax.random.split(key, n_seeds))")
        sizes = {s[0] for s in shapes}
        if len(sizes) > 1:
            raise ShapeError(f"the per-seed arguments disagree on the number of seeds (leading axis sizes "
                             f"{sorted(sizes)}); observations and keys need the states' seed axis too")
        if sizes != {1}:
            return batched(*args)
        squeezed = [jax.tree.map(lambda x: x[0], a) if ax == 0 else a for a, ax in zip(args, in_axes)]
        return jax.tree.map(lambda x: jnp.expand_dims(x, 0), fn(*squeezed))

    return call


def _mean_metrics(ms):
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), ms)


def checked_metrics(learner, metrics):
    """``metrics`` as an update returned them (checked when the program is traced): a dict of one
    number per metric, since the loops average, log and check them per seed; otherwise a one-line
    :class:`~smac_jax.errors.ProtocolError` naming the learner and the metrics."""
    if not isinstance(metrics, dict):
        raise ProtocolError(f"learner {learner.name!r}: update must return (state, metrics dict), got metrics of "
                            f"type {type(metrics).__name__}")
    bad = {k: tuple(jnp.shape(v)) for k, v in metrics.items() if jnp.shape(v) != ()}
    if bad:
        raise ProtocolError(f"learner {learner.name!r}: update returned metric(s) that are not one number per update "
                            f"(shapes {bad}); reduce each to a scalar, e.g. with jnp.mean")
    return metrics


def runs_update_phase(learner) -> bool:
    """Whether ``update_phase`` is defined in the class that defines ``update`` or below it: a
    subclass that overrides only ``update`` (e.g. of TD3 or TD3+BC) must not have its update
    bypassed by an inherited ``update_phase``, so it runs through ``update``."""
    cls = type(getattr(learner, "inner", learner))  # a Swept learner delegates to its inner learner
    definer = lambda name: next(k for k in cls.__mro__ if name in vars(k))
    return issubclass(definer("update_phase"), definer("update"))


def make_offline_step(learner, n_updates: int):
    """``(states, data, seed_keys, step) -> (states, metrics)``: ``n_updates`` updates per seed,
    each on a fresh uniform minibatch of the shared offline ``data``; metrics averaged over the chunk.

    For a learner with ``update_period`` p > 1 (TD3's delayed actor) and ``n_updates`` a multiple
    of p, the program runs the updates p at a time through ``learner.update_phase`` when every
    seed's ``state.step`` is a multiple of p (always, in the pipeline's offline phase), and
    through ``learner.update`` otherwise: the same updates, without computing what a phase
    discards. Metrics of work done only at some phases average those phases."""
    n_updates = need_count(n_updates, "n_updates", "make_offline_step")
    bs = learner.config.batch_size
    period = learner.update_period if runs_update_phase(learner) else 1

    def per_seed(state, data: Transitions, seed_key, step):
        keys = jax.random.split(jax.random.fold_in(seed_key, step), n_updates)

        def body(st, k):
            k_b, k_u = jax.random.split(k)
            st, m = learner.update(st, replay.sample_transitions(data, k_b, bs), k_u)
            return st, checked_metrics(learner, m)

        state, ms = jax.lax.scan(body, state, keys)
        return state, _mean_metrics(ms)

    def per_seed_phased(state, data: Transitions, seed_key, step):
        keys = jax.random.split(jax.random.fold_in(seed_key, step), n_updates)

        def body(st, ks):
            phase_metrics = []
            for phase in range(period):
                k_b, k_u = jax.random.split(ks[phase])
                st, m = learner.update_phase(st, replay.sample_transitions(data, k_b, bs), k_u, phase)
                phase_metrics.append(checked_metrics(learner, m))
            names = {n for m in phase_metrics for n in m}
            return st, {n: jnp.mean(jnp.stack([m[n] for m in phase_metrics if n in m])) for n in names}

        state, ms = jax.lax.scan(body, state, keys.reshape(n_updates // period, period, *keys.shape[1:]))
        return state, _mean_metrics(ms)

    def checked(fn):  # the data's shapes, checked once when the program is traced
        def run(states, data, seed_keys, step):
            data.check_shapes(learner.obs_dim, learner.act_dim, where="data")
            return fn(states, data, seed_keys, step)
        return run

    plain = checked(seed_vmap(per_seed, (0, None, 0, None)))
    if period == 1 or n_updates % period:
        return jax.jit(plain, donate_argnums=0)
    phased = seed_vmap(per_seed_phased, (0, None, 0, None))

    def run(states, data, seed_keys, step):
        aligned = jnp.all(states.step % period == 0)  # one predicate for every seed: a real branch
        try:
            return jax.lax.cond(aligned, phased, plain, states, data, seed_keys, step)
        except TypeError as e:
            if "pytree structure" not in str(e):
                raise
            check_phases_agree(learner, *(jax.eval_shape(f, states, data, seed_keys, step) for f in (phased, plain)))
            raise

    return jax.jit(run, donate_argnums=0)


def check_phases_agree(learner, by_phase, by_update) -> None:
    """The one-line error for ``update_phase`` and ``update`` returning different pytrees (a learner
    that overrides one of them and adds a metric or a state field there only)."""
    if jax.tree.structure(by_phase) == jax.tree.structure(by_update):
        return  # the same: the error was another
    (st_p, m_p), (st_u, m_u) = by_phase, by_update
    what = (f"metrics {sorted(set(m_p) - set(m_u))} only from update_phase and {sorted(set(m_u) - set(m_p))} only "
            "from update" if set(m_p) != set(m_u) else "states of different structure")
    raise ProtocolError(f"learner {learner.name!r}: update_phase and update return {what}: the phases of "
                        "update_phase (together) and update must return the same state and metrics (override "
                        "both, or only update: the offline loop then runs update)")


def unalias(tree):
    """A copy of ``tree`` in which no two leaves share a device buffer.

    Initial states alias arrays (a target network starts as the very same array as its online
    network); the step functions donate their inputs, and XLA refuses to donate one buffer twice.
    """
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
