"""Learners whose numeric hyperparameters differ from lane to lane of one vmapped program.

A run's states carry a leading axis of lanes (seeds, normally). :class:`Swept` wraps a learner so
that each lane also carries its own values of some float hyperparameters (``kappa``,
``critic_lr``, ``cql_alpha``, ...): the values live in the state, ``TrainState.extra["hparams"]``
(path -> scalar), and every method binds them into a copy of the learner's config before running
the wrapped learner's own code, where they are traced values like any other array. So settings x
seeds lanes run as one program, and a setting's lanes compute what a run with that setting's
values computes (``tests/test_vmap_sweep.py``).

Only values that the learner's programs consume as numbers can vary this way. :func:`check_sweepable`
traces the programs with each field as an input and names a field that the learner reads as a
Python value (a branch, a shape, a ``float()``) or that none of its programs uses (e.g. a value
read once when the learner is prepared).
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.errors import ConfigError, need_count
from smac_jax.learners.base import Learner, TrainState, make_learner
from smac_jax.types import Transitions

#: Where a lane's values live in ``TrainState.extra``.
HPARAMS = "hparams"


def bind(learner: Learner, values: dict[str, Any]) -> Learner:
    """A shallow copy of ``learner`` whose config holds ``values`` (field -> number or traced
    scalar); prepared attributes (a score model, a C-VAE) are shared, optimisers rebuilt."""
    if not values:
        return learner
    bound = copy.copy(learner)
    bound.__dict__.pop("opts", None)  # the optimisers read the learning rates: build them again
    cfg = learner.config.copy_and_resolve_references()  # a mutable copy
    with cfg.ignore_type():
        for field, v in values.items():
            cfg[field] = v
    bound.config = cfg
    return bound


def with_hparams(state: TrainState, hp: dict) -> TrainState:
    return state.replace(extra={**state.extra, HPARAMS: hp})


def _without_hparams(state: TrainState) -> TrainState:
    return state.replace(extra={k: v for k, v in state.extra.items() if k != HPARAMS})


class Swept(Learner):
    """``inner`` with per-lane values of the config paths in ``lane_values`` (path -> (lanes,)
    array; every path of the run's sweep, so that the values travel with the state through the
    hand-over). ``fields`` maps the paths that are this learner's hyperparameters to their field
    names (e.g. ``"offline.agent.kappa" -> "kappa"``); the others are carried along unused."""

    def __init__(self, inner: Learner, lane_values: dict[str, np.ndarray], fields: dict[str, str],
                 lane_names: list[str] | None = None, lane_seed_index: list[int] | None = None):
        # not Learner.__init__: the wrapped learner was validated with each setting's values already
        self.inner = inner
        self.lane_names = lane_names  # how errors name a lane, e.g. "setting 2 (kappa=3), seed index 1"
        self.lane_values = {p: np.asarray(v, np.float32) for p, v in lane_values.items()}
        #: Each lane's seed index: lanes of one seed get the host update's key of that seed.
        self.lane_seed_index = list(range(self.n_lanes)) if lane_seed_index is None else list(lane_seed_index)
        self.fields = dict(fields)
        self.config, self.obs_dim, self.act_dim = inner.config, inner.obs_dim, inner.act_dim
        self.name, self.actor_kind = inner.name, inner.actor_kind
        self.update_period, self.policy_groups, self.lr_fields = inner.update_period, inner.policy_groups, inner.lr_fields
        self.host_update_every, self.compiler_options = inner.host_update_every, inner.compiler_options

    @classmethod
    def grid(cls, learner: Learner, values: dict[str, Sequence[float]], n_seeds: int) -> Swept:
        """``learner`` over every combination of ``values`` (field -> values; the first field
        varies slowest) x ``n_seeds`` seeds: lane ``k * n_seeds + j`` is setting ``k`` with seed
        index ``j`` (give it seed ``j``'s key). Each combination must pass the learner's own
        checks (a learner is built with it); the lanes' values are keyed by field name."""
        n_seeds = need_count(n_seeds, "n_seeds", "Swept.grid")
        for field in values:
            if field not in learner.config:
                raise ConfigError(f"Swept.grid: {field!r} is not a hyperparameter of learner {learner.name!r} "
                                  f"(known: {', '.join(sorted(learner.config))})")
            check_float_field(field, learner.config[field], "Swept.grid")
        combos = list(itertools.product(*values.values()))
        for combo in combos:
            make_learner(learner.name, learner.obs_dim, learner.act_dim, {**learner.config, **dict(zip(values, combo))})
        lane_values = {f: np.repeat([c[i] for c in combos], n_seeds) for i, f in enumerate(values)}
        swept = cls(learner, lane_values, {f: f for f in values}, lane_seed_index=list(range(n_seeds)) * len(combos))
        key = jax.random.PRNGKey(0)
        state = jax.eval_shape(learner.init, key)
        batch = jax.eval_shape(lambda k: Transitions.random(k, int(learner.config.batch_size), learner.obs_dim,
                                                            learner.act_dim), key)
        obs = jax.ShapeDtypeStruct((4, learner.obs_dim), jnp.float32)
        check_sweepable(swept, {"initialisation": (lambda b, k: b.init(k), (key,)),
                                "update": (lambda b, st, bt, k: b.update(st, bt, k), (state, batch, key)),
                                "action": (lambda b, st, o, k: b.act(st, o, k, False), (state, obs, key))},
                        "the", where="Swept.grid", require_use=False)
        return swept

    @property
    def n_lanes(self) -> int:
        return len(next(iter(self.lane_values.values())))

    def bound(self, hp: dict) -> Learner:
        """The wrapped learner with one lane's values (``hp``: path -> scalar)."""
        return bind(self.inner, {field: hp[path] for path, field in self.fields.items()})

    def lane(self, i: int) -> dict:
        return {p: jnp.asarray(v[i]) for p, v in self.lane_values.items()}

    # -- the protocol -------------------------------------------------------------------------
    def init_lanes(self, keys: jax.Array) -> TrainState:
        hps = {p: jnp.asarray(v) for p, v in self.lane_values.items()}
        if len(keys) != self.n_lanes:
            raise ValueError(f"{len(keys)} keys for {self.n_lanes} lanes")
        return jax.vmap(lambda k, hp: with_hparams(self.bound(hp).init(k), hp))(keys, hps)

    def init(self, key) -> TrainState:
        """A state with the first lane's values (for shapes; runs build their lanes with :meth:`init_lanes`)."""
        hp = self.lane(0)
        return with_hparams(self.bound(hp).init(key), hp)

    def update(self, state: TrainState, batch, key):
        hp = state.extra[HPARAMS]
        new, metrics = self.bound(hp).update(_without_hparams(state), batch, key)
        return with_hparams(new, hp), metrics

    def update_phase(self, state: TrainState, batch, key, phase: int):
        hp = state.extra[HPARAMS]
        new, metrics = self.bound(hp).update_phase(_without_hparams(state), batch, key, phase)
        return with_hparams(new, hp), metrics

    def act(self, state: TrainState, obs, key, deterministic: bool):
        return self.bound(state.extra[HPARAMS]).act(_without_hparams(state), obs, key, deterministic)

    def value_estimate(self, state: TrainState, obs, key):
        return self.bound(state.extra[HPARAMS]).value_estimate(_without_hparams(state), obs, key)

    def transfer(self, key, src_state: TrainState, src_learner: Learner) -> TrainState:
        hp = src_state.extra[HPARAMS]
        src = src_learner.bound(hp) if isinstance(src_learner, Swept) else src_learner
        return with_hparams(self.bound(hp).transfer(key, _without_hparams(src_state), src), hp)

    def prepare(self, dataset, workdir: str, progress: bool = True) -> None:
        self.inner.prepare(dataset, workdir, progress)
        self.config = self.inner.config

    def host_update(self, state: TrainState, buffer, key, n_rows: int):
        hp = state.extra[HPARAMS]
        new, info = self.bound(hp).host_update(_without_hparams(state), buffer, key, n_rows)
        return with_hparams(new, hp), info

    def host_update_keys(self, step: int, n_lanes: int):
        if n_lanes != self.n_lanes:
            raise ValueError(f"{n_lanes} lanes for a sweep of {self.n_lanes}")
        return self.inner.host_update_keys(step, max(self.lane_seed_index) + 1)[np.asarray(self.lane_seed_index)]


def _uses(jaxpr, n_inputs: int) -> list[bool]:
    """Whether each of the first ``n_inputs`` inputs of ``jaxpr`` can change its outputs: a backward
    pass from the outputs over the equations (an equation with effects always counts; one that
    holds a sub-program counts as a whole), so a value only computed and then dropped (e.g. an
    initial temperature that the hand-over overwrites) does not."""
    live = {id(v) for v in jaxpr.outvars}
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(id(v) in live for v in eqn.outvars):
            live |= {id(v) for v in eqn.invars}
    return [id(v) in live for v in jaxpr.invars[:n_inputs]]


def check_float_field(path: str, current: Any, where: str = "vmap_sweep") -> None:
    """Raise :class:`ConfigError` unless a field's value ``current`` is a float: an integer (a
    size, count or period) or anything else shapes the programs and cannot vary per lane."""
    if isinstance(current, bool) or not isinstance(current, float):
        kind = "an integer (a size, count or period)" if isinstance(current, int) and not isinstance(current, bool) \
            else f"not a number ({current!r})"
        raise ConfigError(f"{where}: {path} is {kind}: it shapes the program, so it is swept as separate "
                          "runs (experiments/sweep.py --set)")


def check_sweepable(learner: Swept, programs: dict[str, Any], phase: str, where: str = "vmap_sweep",
                    require_use: bool = True) -> None:
    """Raise :class:`ConfigError` naming a swept field of ``learner`` that cannot vary per lane.

    ``programs``: name -> ``(fn, args)`` with ``fn(bound_learner, *args) -> outputs`` and ``args``
    abstract inputs (``jax.ShapeDtypeStruct`` trees): the programs the run builds from this
    learner. Each field is traced alone (the others at the first lane's values): a field the
    learner turns into a Python value fails the trace, and a field no program consumes is an error
    too, since sweeping it would change nothing (unless ``require_use`` is False: :meth:`Swept.grid`
    does not know which programs the caller builds, e.g. a hand-over)."""
    first = {p: float(v[0]) for p, v in learner.lane_values.items()}
    for path, field in learner.fields.items():
        used = False
        for name, (fn, args) in programs.items():
            def traced(x, *args, path=path, fn=fn):
                hp = {**first, path: x}
                return fn(bind(learner.inner, {f: hp[p] for p, f in learner.fields.items()}), *args)

            try:
                closed = jax.make_jaxpr(traced)(jax.ShapeDtypeStruct((), jnp.float32), *args)
            except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError) as e:
                reason = str(e).strip().splitlines()[0][:160]
                raise ConfigError(f"{where}: {path} cannot vary within one program: learner {learner.name!r} "
                                  f"uses its value to build its {name} program ({reason}); sweep it as "
                                  "separate runs (experiments/sweep.py --set)") from None
            used = used or _uses(closed.jaxpr, 1)[0]
        if require_use and not used:
            raise ConfigError(f"{where}: {path} changes nothing in the {', '.join(programs)} programs of "
                              f"{phase} learner {learner.name!r} (unused with this config, or read outside them, "
                              "e.g. when the learner is prepared); sweep it as separate runs (experiments/sweep.py --set)")
