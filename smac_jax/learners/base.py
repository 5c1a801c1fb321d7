"""The learner protocol, the registry, and the helpers every learner shares.

A learner is a small class built from ``(config, obs_dim, act_dim)`` with four methods, all
pure and written for ONE seed (the training loops ``jax.vmap`` them over the seed axis):

* ``init(key) -> TrainState``
* ``update(state, batch, key) -> (TrainState, metrics)``: one gradient step of every network.
* ``act(state, obs, key, deterministic) -> action`` in [-1, 1].
* ``transfer(key, src_state, src_learner) -> TrainState``: take over another learner's state
  (docs/algorithms.md, "Hand-over"). The default implementation copies every parameter group of
  ``handover.TRANSFERABLE`` (actor, critic, targets, temperature, value) that both sides have,
  converts the actor between stochastic and deterministic, and re-initialises optimisers.

Every learner keeps its trainable and target parameters in ``TrainState.params``, a dict with
conventional group names (``actor``, ``critic``, ``target_critic``, ``target_actor``,
``log_temp``, ``value``, ...), which is what makes hand-over generic. Losses are plain module-level
functions ``loss(params, batch, key, config)`` that a notebook can import and differentiate.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, ClassVar

import flax.errors
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from smac_jax import networks
from smac_jax.learners.handover import transfer_params
from smac_jax.optim import make_optimizer
from smac_jax.types import Metrics, PRNGKey, Transitions

REGISTRY: dict[str, type["Learner"]] = {}

from smac_jax.errors import ConfigError, ProtocolError, TransferError  # noqa: E402,F401  (re-exported)
from smac_jax.errors import ArgumentError, ShapeError  # noqa: E402


def missing_config_field(e: AttributeError | KeyError, config: Any) -> str | None:
    """The field an ``AttributeError`` (``config.field``) or ``KeyError`` (``config["field"]``) of
    ml_collections names, if ``config`` lacks it."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    field = text.split("\n")[0].strip("'\"")
    return field if field.isidentifier() and field not in config else None


def _indexed_params(tb, params: dict, key: str) -> bool:
    """Whether the innermost frame of traceback ``tb`` failed indexing ``params`` (the very dict, or
    one with its groups) with ``key``: its source line indexes a local name bound to such a dict."""
    import linecache
    import re

    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    line = linecache.getline(frame.f_code.co_filename, tb.tb_lineno)
    for name in re.findall(r"([A-Za-z_]\w*)\s*\[", line):
        obj = frame.f_locals.get(name)
        if isinstance(obj, dict) and key not in obj and (obj is params or set(obj) == set(params)):
            return True
    return False


def checked_loss(fn: Callable) -> Callable:
    """Decorator of a public loss ``fn(params, batch, key, config, ...)``: the mistakes a notebook
    makes when calling it become one-line errors, raised when the loss is called or traced (no cost
    in the compiled program): a batch that is not a :class:`~smac_jax.types.Transitions` or has a
    field of the wrong shape, params or a config of another learner, a batch whose widths do not fit
    the params. ``inspect.signature`` and ``jax.grad`` see ``fn`` itself."""
    where = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"

    @functools.wraps(fn)
    def loss(params, batch, key, config, *args, **kwargs):
        if not isinstance(batch, Transitions):
            raise ArgumentError(f"{where}: batch must be a smac_jax.types.Transitions (e.g. Transitions.random, "
                                f"replay.sample_transitions), got {type(batch).__name__}")
        try:
            batch.check_shapes()
        except ShapeError as e:
            raise ShapeError(f"{where}: {e}") from None
        if not isinstance(params, dict):
            raise ArgumentError(f"{where}: params must be a learner's parameter dict (state.params), got "
                                f"{type(params).__name__}")
        try:
            return fn(params, batch, key, config, *args, **kwargs)
        except KeyError as e:
            group = e.args[0] if e.args else None
            if not (isinstance(group, str) and group not in params and _indexed_params(e.__traceback__, params, group)):
                raise  # another dict's key (a typo in a metrics dict, a config read by item): as it is
            raise ArgumentError(f"{where}: params have no group {group!r} (they have {', '.join(sorted(params))}): "
                                "the parameters of another learner?") from None
        except AttributeError as e:
            field = missing_config_field(e, config)
            if field is None:
                raise
            raise ConfigError(f"{where} reads config.{field}, which this config lacks: in a learner, add the field "
                              "to its default_config(); called by hand, pass the config of the learner the loss "
                              "belongs to (make_learner(name, ...).config)") from None
        except (flax.errors.ScopeParamShapeError, flax.errors.ScopeParamNotFoundError) as e:
            kind = ShapeError if isinstance(e, flax.errors.ScopeParamShapeError) else ArgumentError
            first = str(e).split(" (https://")[0].splitlines()[0]
            raise kind(f"{where}: the params do not fit this loss and batch (batch.obs {batch.obs.shape[-1]} wide, "
                       f"batch.action {batch.action.shape[-1]}; another learner's params, or a batch of another "
                       f"environment?): {first}") from None

    return loss


@flax.struct.dataclass
class TrainState:
    params: dict[str, Any]
    opt_state: dict[str, Any]
    step: jax.Array
    extra: dict[str, Any] = flax.struct.field(default_factory=dict)


def register(name: str) -> Callable[[type["Learner"]], type["Learner"]]:
    """Class decorator: make a learner available by ``name`` (``make_learner(name, ...)``).

    The same class defined again (same module and qualified name: a notebook cell run twice, a
    reloaded module) replaces the earlier definition; a different class under a taken name is an
    error."""

    def deco(cls: type["Learner"]) -> type["Learner"]:
        old = REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(f"learner name {name!r} is taken by {old.__module__}.{old.__qualname__}; "
                              f"{cls.__module__}.{cls.__qualname__} needs another name")
        # a bound of its own on a misspelt or missing field would never be checked (inherited ones
        # may name fields a subclass dropped, as AWAC drops SAC's temperature)
        unknown = sorted(set(vars(cls).get("bounds", {})) - set(cls.default_config()))
        if unknown:
            raise ConfigError(f"learner {name!r}: bounds name {', '.join(unknown)}, not in "
                              f"{cls.__qualname__}.default_config()")
        # a learning-rate field that does not exist would fail deep inside the optimiser's construction
        lr_unknown = sorted(f"{g}: {f!r}" for g, f in getattr(cls, "lr_fields", {}).items()
                            if f not in cls.default_config())
        if lr_unknown:
            raise ConfigError(f"learner {name!r}: lr_fields names {', '.join(lr_unknown)}, not a field of "
                              f"{cls.__qualname__}.default_config() (group -> config field of its learning rate)")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


#: Environment variable: comma-separated modules (importable names, e.g. ``my_learners.redq``) that
#: register learners of one's own; imported the first time a learner is looked up by name, so that
#: every launch script and analysis script knows them.
LEARNER_MODULES_ENV = "SMAC_JAX_LEARNERS"


def import_learner_modules() -> None:
    """Import the modules named in ``$SMAC_JAX_LEARNERS`` (Python imports each once); one that cannot
    be imported is a :class:`ConfigError` naming it."""
    import importlib
    import os

    for mod in (m.strip() for m in os.environ.get(LEARNER_MODULES_ENV, "").split(",")):
        if mod:
            try:
                importlib.import_module(mod)
            except ImportError as e:
                raise ConfigError(f"{LEARNER_MODULES_ENV}: cannot import {mod!r} ({e}); is its directory on "
                                  "PYTHONPATH?") from None


def available_learners() -> list[str]:
    import_learner_modules()
    return sorted(REGISTRY)


def get_learner_class(name: str) -> type["Learner"]:
    if name not in REGISTRY:
        import_learner_modules()
    if name not in REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, available_learners(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown learner {name!r}{hint}; available: {', '.join(available_learners())}. "
                          f"A learner of your own is known once its module is imported: name the module in "
                          f"${LEARNER_MODULES_ENV} for the launch scripts")
    return REGISTRY[name]


def resolve_config(name: str, overrides: Any = None) -> ml_collections.ConfigDict:
    """The learner's defaults updated with ``overrides``; an unknown key is an error naming it."""
    cfg = get_learner_class(name).default_config()
    if overrides is not None:
        for k, v in dict(overrides).items():
            if k not in cfg:
                raise ConfigError(
                    f"{k!r} is not a hyperparameter of learner {name!r} (known: {', '.join(sorted(cfg))})"
                )
            if isinstance(v, np.generic):  # a NumPy scalar (np.float32(1e-3)) as the Python number it holds
                v = v.item()
            try:
                cfg[k] = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
            except TypeError:
                raise ConfigError(f"learner {name!r}: {k}={v!r} has the wrong type; the default is "
                                  f"{cfg[k]!r} ({type(cfg[k]).__name__})") from None
    validate_hyperparameters(name, cfg)
    return cfg


@dataclasses.dataclass(frozen=True)
class Bound:
    """The range of a numeric hyperparameter: ``lo``/``hi`` (None: unbounded), each inclusive unless
    ``*_open``; ``integer`` for counts. ``allow_none``: None is a valid value (a derived default).
    Values must be finite."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    allow_none: bool = False

    def holds(self, v: Any) -> bool:
        if v is None:
            return self.allow_none
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.integer and int(v) != v:
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        if self.lo is None and self.hi is None:
            return f"must be a finite {what[3:] if self.integer else what[2:]}" + (" (or None)" if self.allow_none else "")
        if self.lo is not None and self.hi is not None:
            rng = f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            rng = f"{'>' if self.lo_open else '>='} {self.lo:g}"
        else:
            rng = f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"must be {what} {rng}" + (" (or None)" if self.allow_none else "")


def above(x: float, **kw) -> Bound:
    """``> x``."""
    return Bound(lo=x, lo_open=True, **kw)


def at_least(x: float, **kw) -> Bound:
    """``>= x``."""
    return Bound(lo=x, **kw)


def count(minimum: int = 1) -> Bound:
    """An integer ``>= minimum``."""
    return Bound(lo=minimum, integer=True)


def learner_bounds(cls: type["Learner"]) -> dict[str, Bound]:
    """The ``bounds`` of ``cls`` and of every learner it derives from (a subclass's entry wins)."""
    merged: dict[str, Bound] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("bounds", {}))
    return merged


ENSEMBLE_LAYOUTS = ("auto", "batched", "separate")


LAYER_WIDTHS = "must be one or more integer layer widths >= 1, e.g. (256, 256)"


def layer_widths(dims: Any) -> bool:
    """Whether ``dims`` is a non-empty tuple / list of integer widths >= 1."""
    return isinstance(dims, (tuple, list)) and len(dims) >= 1 and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in dims)


def merge_section(owner: str, section: str, given: Any, defaults: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``defaults`` updated with the fields of a nested config section ``given`` (a partial
    override, e.g. ``{"steps": 1000}``, keeps the other defaults); an unknown field or a value of
    the wrong type is a :class:`ConfigError` naming ``section.field``."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"learner {owner!r}: unknown {section} field(s) {unknown} (known: {', '.join(sorted(defaults))})")
    for k, v in dict(given).items():
        try:
            defaults[k] = v
        except TypeError:
            raise ConfigError(f"learner {owner!r}: {section}.{k}={v!r} has the wrong type; the default is "
                              f"{defaults[k]!r}") from None
    return defaults


def check_section(owner: str, section: str, cfg: Any, bounds: dict[str, Bound], choices: dict | None = None) -> None:
    """Range checks of a nested config section (SMAC's ``score_config``, SAMG's ``cvae``): each
    field of ``bounds`` present in ``cfg`` must hold its bound, each of ``choices`` be one of its
    values, and ``hidden_dims`` (if present) be layer widths; the message names ``section.field``."""
    for field, bound in bounds.items():
        if field in cfg and not bound.holds(cfg[field]):
            raise ConfigError(f"learner {owner!r}: {section}.{field}={cfg[field]!r} {bound.describe()}")
    for field, allowed in (choices or {}).items():
        if field in cfg and cfg[field] not in allowed:
            raise ConfigError(f"learner {owner!r}: {section}.{field}={cfg[field]!r} must be one of {tuple(allowed)}")
    if "hidden_dims" in cfg and not layer_widths(cfg["hidden_dims"]):
        raise ConfigError(f"learner {owner!r}: {section}.hidden_dims={cfg['hidden_dims']!r} {LAYER_WIDTHS}")


def validate_hyperparameters(name: str, cfg: ml_collections.ConfigDict) -> None:
    """Range checks shared by every learner; the message names the field."""
    from smac_jax.optim import MUON_SCOPES, OPTIMIZERS

    def need(ok, field, what):
        if not ok:
            raise ConfigError(f"learner {name!r}: {field}={cfg[field]!r} {what}")

    defaults = REGISTRY[name].default_config() if name in REGISTRY else {}
    for k in cfg:
        v = cfg[k]
        if k.endswith("_lr"):
            need(isinstance(v, (int, float)) and 0 < v < math.inf, k, "must be a finite learning rate > 0")
        if isinstance(v, float) and not math.isfinite(v):  # infinite only where the default is (CQL's clips)
            need(math.isinf(v) and defaults.get(k) == v, k, "must be finite")
    for k in ("gamma", "tau"):
        if k in cfg:
            need(0 < cfg[k] <= 1, k, "must be in (0, 1]")
    for k in ("batch_size", "num_critics"):
        if k in cfg:
            need(int(cfg[k]) >= 1, k, "must be >= 1")
    if "hidden_dims" in cfg:
        need(layer_widths(cfg.hidden_dims), "hidden_dims", LAYER_WIDTHS)
    if "ensemble_layout" in cfg:
        need(cfg.ensemble_layout in ENSEMBLE_LAYOUTS, "ensemble_layout", f"must be one of {ENSEMBLE_LAYOUTS}")
    if "optimizer" in cfg:
        need(cfg.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}")
    if "muon_scope" in cfg:
        need(cfg.muon_scope in MUON_SCOPES, "muon_scope", f"must be one of {MUON_SCOPES}")
    if "muon_consistent_rms" in cfg:  # None: Muon's own scale; a negative one would reverse its updates
        v = cfg.muon_consistent_rms
        need(v is None or (isinstance(v, (int, float)) and 0 < v < math.inf), "muon_consistent_rms",
             "must be a finite number > 0 (or None)")
    if "log_std_min" in cfg and "log_std_max" in cfg:
        need(cfg.log_std_min < cfg.log_std_max, "log_std_min", f"must be below log_std_max={cfg.log_std_max}")
    if name in REGISTRY:  # each learner's own fields (its class's ``bounds``)
        for field, bound in learner_bounds(REGISTRY[name]).items():
            if field in cfg:
                v = cfg[field]
                infinite = isinstance(v, float) and math.isinf(v)
                need(bound.holds(v), field, "must be finite" if infinite else bound.describe())


class LearnerConfig(ml_collections.FrozenConfigDict):
    """A made learner's config: read-only, since its networks and optimisers are built from it (a
    learning rate changed afterwards would be ignored, a misspelt field silently added). Another
    setting is another learner: ``make_learner(name, obs_dim, act_dim, {**learner.config, field: value})``."""

    def __setattr__(self, field, value):
        raise ConfigError(f"a learner's config is read-only (its networks and optimisers are built from it): "
                          f"for {field}={value!r} make another learner, make_learner(name, obs_dim, act_dim, "
                          f"{{**learner.config, {field!r}: {value!r}}})")

    __setitem__ = __setattr__

    def copy_and_resolve_references(self, visit_map=None) -> ml_collections.ConfigDict:
        """A mutable copy (``ml_collections.ConfigDict``), e.g. to call a loss with another value."""
        return self.as_configdict()


def make_learner(name: str, obs_dim: int, act_dim: int, overrides: Any = None) -> "Learner":
    """The registered learner ``name`` with its defaults updated by ``overrides`` (every value
    checked); its ``config`` is read-only (:class:`LearnerConfig`)."""
    learner = get_learner_class(name)(resolve_config(name, overrides), obs_dim, act_dim)
    learner.config = LearnerConfig(learner.config)
    return learner


def base_config() -> ml_collections.ConfigDict:
    """Hyperparameters every actor-critic learner shares (docs/algorithms.md, "Conventions")."""
    return ml_collections.ConfigDict(
        dict(
            gamma=0.99,  # discount of the TD targets, in (0, 1]; keep equal to dataset.gamma
            tau=0.005,  # Polyak rate of the target networks, in (0, 1]: target <- (1 - tau) target + tau online
            batch_size=256,  # transitions per minibatch, i.e. per update step
            hidden_dims=(256, 256),  # widths of the hidden layers of every MLP (actor trunk, each critic, value nets)
            actor_layer_norm=False,  # LayerNorm after each hidden Dense layer of the actor
            critic_layer_norm=False,  # LayerNorm after each hidden Dense layer of the critics (and value nets)
            num_critics=2,  # critic ensemble size; TD targets and actor losses use the minimum over it
            # how an ensemble is computed: "auto" | "batched" | "separate"; speed only, same values
            # (docs/algorithms.md, "Conventions")
            ensemble_layout="auto",
            actor_lr=3e-4,  # learning rate of the actor's optimiser, > 0
            critic_lr=3e-4,  # learning rate of the critic ensemble's optimiser, > 0
            optimizer="adam",  # "adam" | "muon" (docs/algorithms.md, "Optimiser")
            muon_consistent_rms=0.2,  # Muon's update RMS scale (0.2 matches AdamW's typical update RMS)
            muon_scope="hidden",  # which kernels Muon updates: "hidden" (hidden-to-hidden) | "all_kernels"
            log_std_min=-20.0,  # lower clip of the Gaussian actor's log-std (natural log)
            log_std_max=2.0,  # upper clip of the Gaussian actor's log-std (natural log)
        )
    )


class Learner:
    """Base class; see the module docstring for the protocol."""

    name: ClassVar[str] = "base"
    #: "gaussian" (tanh-Gaussian, has a log-std head) or "deterministic".
    actor_kind: ClassVar[str] = "gaussian"
    #: Set for a learner whose method starts at a hand-over (ACA, SAMG): why pre-training with it
    #: is not what a user wants, printed as a warning when it is the offline learner.
    offline_note: ClassVar[str | None] = None
    #: Whether its losses read ``batch.mc_return`` (the data's discounted returns, computed on load
    #: with ``dataset.gamma``): a run then refuses a ``gamma`` other than the dataset's.
    reads_mc_return: ClassVar[bool] = False
    #: Ranges of this learner's own numeric hyperparameters (e.g. ``{"cql_alpha": at_least(0)}``),
    #: checked with the shared ones whenever its config is resolved; a learner's entries add to those
    #: of the learners it derives from.
    bounds: ClassVar[dict[str, Bound]] = {}

    def __init__(self, config: ml_collections.ConfigDict, obs_dim: int, act_dim: int):
        self.config = config
        self.obs_dim = obs_dim
        self.act_dim = act_dim

    # -- protocol -------------------------------------------------------------------------
    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        return base_config()

    def init(self, key: PRNGKey) -> TrainState:
        """A fresh state: :meth:`init_params`, and every optimiser of :attr:`opts` initialised on its group."""
        params = self.init_params(key)
        absent = [g for g in self.opts if g not in params]
        if absent:
            raise ProtocolError(f"learner {self.name!r}: optimisers for parameter group(s) {absent}, which "
                                f"init_params does not make (it makes {', '.join(sorted(params))}): check "
                                f"{type(self).__name__}.lr_fields (group -> config field of its learning rate) "
                                "or optimizers()")
        opt_state = {g: opt.init(params[g]) for g, opt in self.opts.items()}
        return TrainState(params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32))

    def init_lanes(self, keys: jax.Array) -> TrainState:
        """One state per key, stacked on a leading lane (seed) axis: ``jax.vmap(self.init)(keys)``
        (a learner swept over settings, :mod:`smac_jax.learners.swept`, also gives each lane its values)."""
        return jax.vmap(self.init)(keys)

    def init_params(self, key: PRNGKey) -> dict[str, Any]:
        """Every parameter group (trained, target and frozen ones) for one seed."""
        raise NotImplementedError

    def update(self, state: TrainState, batch: Transitions, key: PRNGKey) -> tuple[TrainState, Metrics]:
        raise NotImplementedError

    def act(self, state: TrainState, obs: jax.Array, key: PRNGKey, deterministic: bool) -> jax.Array:
        raise NotImplementedError

    def value_estimate(self, state: TrainState, obs: jax.Array, key: PRNGKey) -> jax.Array:
        """The critic's estimate of the deterministic policy's return from ``obs``: the minimum
        over the ensemble of Q(s, pi(s)) (for learners with a ``critic`` group)."""
        a = self.act(state, obs, key, True)
        return networks.critic_net(self.config).apply(state.params["critic"], obs, a).min(0)

    #: Updates whose work differs with ``state.step % update_period`` (TD3's delayed actor). The
    #: offline loop then runs :meth:`update_phase` with the phase known while tracing.
    update_period: int = 1

    def update_phase(self, state: TrainState, batch: Transitions, key: PRNGKey, phase: int):
        """:meth:`update` for a state known to be at ``state.step % update_period == phase``
        (a Python int): the same result, without computing work that phase discards."""
        return self.update(state, batch, key)

    def prepare(self, dataset: Any, workdir: str, progress: bool = True) -> None:
        """Host-side preparation from the offline dataset before ``init`` (default: nothing).

        E.g. SMAC loads or fits its score model here. Called once by the pipeline."""

    def param_groups(self) -> set[str]:
        """The names of the parameter groups :meth:`init_params` makes (from shapes only)."""
        return set(jax.eval_shape(self.init_params, jax.random.PRNGKey(0)))

    def check_start(self, dataset: Any, source: "Learner | None" = None) -> None:
        """Checks a run makes before it writes anything (default: none): what :meth:`prepare`
        would read from elsewhere (a saved model fitted with other settings), and whether
        ``source`` (the offline learner, for an online one) can hand over to this learner where
        that can be told without preparing either. Raise :class:`~smac_jax.errors.ConfigError` or
        :class:`~smac_jax.errors.TransferError`."""

    def stand_in_models(self) -> None:
        """Give a learner whose :meth:`prepare` fits or loads a model (SMAC's score model, SAMG's
        C-VAE) an unfitted one of the same shapes, so that the start checks can trace its
        initialisation and hand-over before anything is fitted (default: nothing to do). Only ever
        called on a learner built for those checks."""

    #: Online: call :meth:`periodic_host_update` at every multiple of this many environment steps
    #: (0: never). The online loop ends a chunk there, before that step's evaluation and checkpoint.
    host_update_every: int = 0
    #: XLA compiler options of the host update's program (None: XLA's defaults).
    compiler_options: dict | None = None
    #: Per-lane summary of the last host update (host numpy, with its ``step``), or None.
    last_host_update: dict | None = None

    def host_update(self, state: TrainState, buffer: Any, key: PRNGKey, n_rows: int) -> tuple[TrainState, Metrics]:
        """One lane's periodic update between two chunks of the online loop (pure; e.g. SAMG's
        adaptive C-VAE update): from its state, its online replay buffer (whose newest ``n_rows``
        rows are the period's) and a key, ``(new state, summary)``. Needed when
        :attr:`host_update_every` > 0."""
        raise NotImplementedError(f"{self.name} sets host_update_every but has no host_update")

    def host_update_keys(self, step: int, n_lanes: int) -> jax.Array:
        """The keys of the host update at environment ``step``, one per lane (seed)."""
        return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), step), n_lanes)

    def periodic_host_update(self, states: TrainState, buffers: Any, step: int) -> TrainState:
        """At every multiple of :attr:`host_update_every` environment steps: :meth:`host_update` of
        every lane (states and buffers with a leading lane axis), one jitted program; any other
        step: ``states`` as is. The summary is left in :attr:`last_host_update`. The returned
        states share no device buffer with each other or with ``states`` (they may be donated)."""
        every = self.host_update_every
        if not every or step <= 0 or step % every:
            return states
        n_rows = min(every, int(buffers.rows.shape[-2]))
        programs = self.__dict__.setdefault("_host_programs", {})
        if n_rows not in programs:
            programs[n_rows] = jax.jit(jax.vmap(functools.partial(self.host_update, n_rows=n_rows)),
                                       compiler_options=self.compiler_options)
        keys = self.host_update_keys(step, int(buffers.rows.shape[0]))
        states, info = programs[n_rows](states, buffers, keys)
        self.last_host_update = {"step": int(step), **jax.tree.map(np.asarray, info)}
        # Fresh buffers for every leaf: two leaves may hold the same value (SAMG's period snapshot
        # and target network), and the online loop donates the states it is given.
        return jax.tree.map(lambda x: jnp.array(x, copy=True), states)

    #: The policy side's parameter groups (those a learner has): what the online critic warm-up
    #: holds still while the critic adapts to online data (``online.critic_warmup``).
    policy_groups: ClassVar[tuple[str, ...]] = ("actor", "target_actor", "log_temp")

    #: Each trained parameter group and the config field holding its learning rate.
    lr_fields: ClassVar[dict[str, str]] = {"actor": "actor_lr", "critic": "critic_lr"}

    def optimizers(self) -> dict[str, optax.GradientTransformation]:
        """One optimiser per trained parameter group (keys of ``opt_state``); built once, as :attr:`opts`.
        Default: :func:`make_optimizer` at each group's learning rate of :attr:`lr_fields`."""
        return {g: make_optimizer(self.config, self.config[f]) for g, f in self.lr_fields.items()}

    def actor_critic_params(self, k_actor: PRNGKey, k_critic: PRNGKey) -> dict[str, Any]:
        """A fresh actor (of :attr:`actor_kind`), critic ensemble, and the critic's target copy."""
        obs, act = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.act_dim))
        make_actor = networks.gaussian_actor if self.actor_kind == "gaussian" else networks.deterministic_actor
        critic = networks.critic_net(self.config).init(k_critic, obs, act)
        return {"actor": make_actor(self.config, self.act_dim).init(k_actor, obs),
                "critic": critic, "target_critic": critic}

    @functools.cached_property
    def opts(self) -> dict[str, optax.GradientTransformation]:
        return self.optimizers()

    def grad_step(self, groups: str | tuple[str, ...], loss_fn, params: dict, opt_state: dict, batch, key):
        """One gradient step of ``loss_fn(params, batch, key, config)`` on the parameter group(s)
        ``groups``, each with its own optimiser; returns ``(params, opt_state, info)`` with those
        groups updated and everything else as given."""
        names = (groups,) if isinstance(groups, str) else tuple(groups)
        absent = [g for g in names if g not in params]
        if absent:
            raise ProtocolError(f"learner {self.name!r}: grad_step on parameter group(s) {absent}, which its "
                                f"params lack (groups: {sorted(params)})")
        no_opt = [g for g in names if g not in self.opts or g not in opt_state]
        if no_opt:
            raise ProtocolError(f"learner {self.name!r}: parameter group(s) {no_opt} have no optimiser: add each to "
                                f"{type(self).__name__}.lr_fields (group -> config field of its learning rate) or "
                                "build it in optimizers()")
        grads, info = jax.grad(
            lambda sub: self.call_loss(loss_fn, {**params, **sub}, batch, key), has_aux=True
        )({g: params[g] for g in names})
        params, opt_state = dict(params), dict(opt_state)
        for g in names:
            params[g], opt_state[g] = apply_grad(self.opts[g], params[g], opt_state[g], grads[g])
        return params, opt_state, info

    def call_loss(self, loss_fn, params: dict, batch, key):
        """``loss_fn(params, batch, key, config)``, its two commonest mistakes as one-line errors:
        a config field its learner's ``default_config()`` lacks (:class:`ConfigError`) and a loss
        that is not a scalar (:class:`~smac_jax.errors.ShapeError`)."""
        fn = getattr(loss_fn, "__qualname__", repr(loss_fn))
        try:
            out = loss_fn(params, batch, key, self.config)
        except AttributeError as e:  # ml_collections: AttributeError("'field'") for a missing field
            field = missing_config_field(e, self.config)
            if field is not None:
                raise ConfigError(f"learner {self.name!r}: {fn} reads config.{field}, which "
                                  f"{type(self).__name__}.default_config() does not define") from None
            raise
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ShapeError(f"learner {self.name!r}: {fn} must return (scalar loss, info dict), got {type(out).__name__}")
        if jnp.shape(out[0]) != ():
            raise ShapeError(f"learner {self.name!r}: {fn} returned a loss of shape {tuple(jnp.shape(out[0]))}; "
                             "a loss must be a scalar (e.g. take .mean() over the batch)")
        return out

    # -- hand-over ------------------------------------------------------------------------
    def transfer(self, key: PRNGKey, src_state: TrainState, src_learner: "Learner") -> TrainState:
        """Build this learner's initial state from another learner's: :func:`handover.transfer_params`
        into a fresh state, optimisers re-initialised (docs/algorithms.md, "Hand-over")."""
        fresh = self.init(key)
        params = transfer_params(fresh.params, src_state.params, src_learner, self)
        return self.fresh_optimizer_state(fresh.replace(params=params))

    def fresh_optimizer_state(self, state: TrainState) -> TrainState:
        """Re-initialise every optimiser on the state's current parameters (docs/algorithms.md, "Hand-over")."""
        opt_state = {g: opt.init(state.params[g]) for g, opt in self.opts.items()}
        return state.replace(opt_state=opt_state)


# -- small shared helpers -----------------------------------------------------------------------
def polyak(target: Any, online: Any, tau: float) -> Any:
    with jax.named_scope("target_update"):  # names the ops in profiles (experiments/profile_update.py)
        return optax.incremental_update(online, target, tau)


def apply_grad(
    opt: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any
) -> tuple[Any, Any]:
    with jax.named_scope("optimizer"):  # names the ops in profiles (experiments/profile_update.py)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def sg(x: Any) -> Any:
    return jax.lax.stop_gradient(x)


def ensemble_td_loss(critic_params: Any, batch: Transitions, y: jax.Array, config: Any):
    """sum_i mean_batch (Q_i(s, a) - y)^2 over the critic ensemble, no gradient through ``y``."""
    from smac_jax import networks

    batch.check_shapes()
    if y.shape != batch.reward.shape:
        from smac_jax.errors import ShapeError
        raise ShapeError(f"TD target has shape {tuple(y.shape)}; expected {tuple(batch.reward.shape)}, one per row of the batch")
    y = sg(y)
    q = networks.critic_net(config).apply(critic_params, batch.obs, batch.action)
    loss = ((q - y[None]) ** 2).mean(axis=1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": y.mean()}
