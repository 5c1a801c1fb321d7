"""SAMG, State-Action-conditional offline Model Guidance (Zhang et al.), as one wrapper around the
online SAC, AWAC, CQL, Cal-QL and IQL learners: ``samg_sac``, ``samg_awac``, ``samg_cql``,
``samg_calql``, ``samg_iql`` (docs/samg.md has the equations, defaults and decisions).

The wrapped learner is unchanged except for its TD target's bootstrap term:

    y = r + gamma (1 - d) [ (1 - p(s, a)) Qbar(s', a') + p(s, a) Q_off(s', a') ]

with a' the learner's own next-action choice (for SAC and CQL with ``backup_entropy`` the term
-T log pi(a'|s') is then subtracted from the whole bracket, as the learner always does), Qbar the
learner's min-over-ensemble target critic and Q_off the min-over-ensemble of the FROZEN offline
critic. ``samg_iql`` mixes values instead: y = r + gamma (1 - d) [(1 - p) V(s') + p V_off(s')].
The base learners expose the bootstrap term as a hook (``next_q_fn`` of
:func:`smac_jax.learners.sac.td_target`, :func:`smac_jax.learners.awac.td_target` and
:func:`smac_jax.learners.cql.td_target`; ``next_v_fn`` of :func:`smac_jax.learners.iql.td_target`);
SAMG passes :func:`guided_next_q` / :func:`guided_next_value` there.

Parameter groups added to the base learner's (none of them is ever optimised):

* ``offline_critic`` (``offline_value`` for ``samg_iql``): the offline learner's ``critic``
  (``value``), frozen, filled at hand-over;
* ``cvae`` and ``cvae_stats``: the C-VAE (:mod:`smac_jax.samg.cvae`) and its latent normals
  (:mod:`smac_jax.samg.confidence`), fitted on the offline dataset in :meth:`prepare` and changed
  only by the adaptive update;
* ``guidance``: 1 after a hand-over, 0 before (a samg learner that was not handed an offline
  critic trains exactly like its base learner).

p(s, a) is computed at batch time from the transition's (s, a) with the C-VAE in the state
(:func:`smac_jax.samg.confidence.coefficient`); it is the same p for a stored transition until the
adaptive update changes the model. ``TrainState.extra["period_target"]`` holds the target network
(``target_critic``; IQL: ``value``) saved at the start of the adaptive period.

Adaptive update (host side, between chunks of the online loop): ``learner.host_update_every``
(``adaptive_every``, 10k environment steps; 0 when off) and
``learner.periodic_host_update(states, buffers, step) -> states``, for all seeds at once
(:mod:`smac_jax.samg.adaptive`).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smac_jax import networks
from smac_jax.learners import awac, calql, cql, iql, sac
from smac_jax.learners.base import (Bound, ConfigError, TransferError, above, at_least, check_section, count,
                                    merge_section, register, sg)
from smac_jax.learners.handover import check_same_structure
from smac_jax.samg import adaptive, confidence
from smac_jax.samg import cvae as cvae_mod

#: Parameter groups SAMG adds (never optimised, never handed over to another learner).
#: Ranges of the C-VAE's fields (``cvae``), checked when the learner is built.
CVAE_BOUNDS = {"latent_dim": count(0), "log_std_min": Bound(), "log_std_max": Bound(), "beta_kl": at_least(0),
               "anneal_frac": Bound(0, 1), "steps": count(), "batch_size": count(), "lr": above(0), "seed": count(0),
               "chunk": count()}
SAMG_GROUPS = ("offline_critic", "offline_value", "cvae", "cvae_stats", "guidance")


def samg_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Add SAMG's fields (docs/samg.md) to a base learner's config."""
    cfg.coefficient = "cvae"  # "cvae" (the SAMG coefficient) | "even" | "random" (ablations)
    cfg.p_threshold = 0.6  # p_m: p = p_int if p_int >= p_m else 0
    cfg.even_p = 0.5  # p everywhere with coefficient="even"
    cfg.random_p_seed = 0  # seed of the per-transition U[0, 1] draws with coefficient="random"
    cfg.cvae = cvae_mod.default_cvae_config()  # the C-VAE's fields (smac_jax.samg.cvae; docs/samg.md)
    cfg.cvae_path = ""  # where the fitted C-VAE is loaded from / saved to ("" = <workdir>/cvae)
    cfg.adaptive = True  # False: the C-VAE stays as fitted offline ("SAMG-static")
    cfg.adaptive_every = 10_000  # environment steps between adaptive updates
    cfg.adaptive_frac = 0.1  # share of the period's OOD samples (lowest Bellman error) trained on
    cfg.adaptive_steps = 1_000  # C-VAE Adam steps per adaptive update
    cfg.refit_rows = 20_000  # offline rows kept (random subset) to refit the normals on
    return cfg


# -- the guided bootstrap terms -----------------------------------------------------------------
def guidance_coefficient(params, batch, config) -> jax.Array:
    """The rows' p(s, a) times the ``guidance`` switch, ``(B,)``. Inside the learner's ``update``
    the value computed once per minibatch is passed in as ``params["samg_p"]`` and used as is."""
    if "samg_p" in params:
        return params["samg_p"]
    p = confidence.coefficient(params["cvae"], params["cvae_stats"], batch.obs, batch.action, config)
    return params["guidance"] * p


def guided_next_q(params, batch, next_obs, next_a, config) -> jax.Array:
    """(1 - p) min_i Qbar_i(s', a') + p min_i Q_off,i(s', a'), p = p(s, a) of the batch rows
    (broadcast over any sample axes in front of the batch axis)."""
    p = guidance_coefficient(params, batch, config)
    q_bar = sac.target_critic_q(params, batch, next_obs, next_a, config)
    q_off = networks.critic_net(config).apply(params["offline_critic"], next_obs, next_a).min(0)
    return (1.0 - p) * q_bar + p * q_off


def guided_next_value(params, batch, next_obs, config) -> jax.Array:
    """(1 - p) V(s') + p V_off(s') (``samg_iql``)."""
    p = guidance_coefficient(params, batch, config)
    v = iql.next_state_value(params, batch, next_obs, config)
    v_off = networks.value_net(config).apply(params["offline_value"], next_obs)[0]
    return (1.0 - p) * v + p * v_off


#: Per bootstrap kind: (hook keyword, guided hook, frozen group, offline group it copies,
#: target network group saved at each period's start).
_KINDS = {
    "q": ("next_q_fn", guided_next_q, "offline_critic", "critic", "target_critic"),
    "v": ("next_v_fn", guided_next_value, "offline_value", "value", "value"),
}


def make_samg_learner(name: str, base: type, td_target_fn, kind: str = "q") -> type:
    """Register ``name``: ``base`` with SAMG's guided TD target (module docstring).

    ``td_target_fn(params, batch, key, config, <hook>=...)`` is the base learner's TD target (used
    unguided, for the adaptive update's Bellman errors); ``kind`` "q" (a Q-function bootstrap,
    hook ``next_q_fn``) or "v" (IQL's V(s') bootstrap, hook ``next_v_fn``)."""
    hook_kw, guided, frozen_group, source_group, target_group = _KINDS[kind]

    class SAMGLearner(base):
        bounds = {"p_threshold": Bound(0, 1), "even_p": Bound(0, 1), "adaptive_frac": Bound(0, 1, lo_open=True),
                  "refit_rows": count(), "adaptive_steps": count(0)}
        critic_loss_fn = staticmethod(functools.partial(base.critic_loss_fn, **{hook_kw: guided}))
        offline_note = (f"its guidance starts at the hand-over: offline it trains exactly as {base.name}, after "
                        f"fitting a C-VAE it does not use; pre-train with {base.name} instead")
        base_learner = base

        @classmethod
        def default_config(cls) -> ml_collections.ConfigDict:
            return samg_config(super().default_config())

        def __init__(self, config, obs_dim: int, act_dim: int):
            super().__init__(config, obs_dim, act_dim)
            c = config
            # A partial ``cvae`` override (e.g. {"steps": 1000}) keeps the other defaults.
            c.cvae = full = merge_section(self.name, "cvae", c.cvae, cvae_mod.default_cvae_config())
            check_section(self.name, "cvae", full, CVAE_BOUNDS)
            if full.log_std_min >= full.log_std_max:
                raise ConfigError(f"{self.name}: cvae.log_std_min={full.log_std_min} must be below "
                                  f"cvae.log_std_max={full.log_std_max}")
            if c.coefficient not in confidence.COEFFICIENTS:
                raise ConfigError(f"{self.name}: coefficient must be one of {confidence.COEFFICIENTS}, "
                                  f"got {c.coefficient!r}")
            if c.adaptive and c.adaptive_every < 1:
                raise ConfigError(f"{self.name}: adaptive_every must be >= 1, got {c.adaptive_every}")
            self.cvae_params = None
            self.cvae_stats = None
            self.reference = (np.zeros((0, obs_dim), np.float32), np.zeros((0, act_dim), np.float32))
            #: Environment steps between two adaptive updates (:meth:`periodic_host_update`; 0: never).
            self.host_update_every = int(c.adaptive_every) if c.adaptive and c.coefficient == "cvae" else 0

        # -- the C-VAE ----------------------------------------------------------------------
        def prepare(self, dataset, workdir: str, progress: bool = True) -> None:
            """Load the C-VAE and its normals from ``cvae_path`` (or ``<workdir>/cvae``), fitting and
            saving them on ``dataset`` first if missing; keep ``refit_rows`` dataset rows for the
            adaptive refits. Nothing to do for the "even" / "random" ablations."""
            super().prepare(dataset, workdir, progress)
            if self.config.coefficient != "cvae":
                return
            from smac_jax.samg.store import fit_or_load_cvae

            path = self.config.cvae_path or os.path.join(workdir, "cvae")
            params, stats, _ = fit_or_load_cvae(path, dataset, self.config.cvae, progress=progress)
            t = dataset.transitions
            n = t.obs.shape[0]
            rng = np.random.default_rng(int(self.config.cvae.seed))
            idx = np.sort(rng.choice(n, min(int(self.config.refit_rows), n), replace=False))
            self.set_cvae(params, stats, np.asarray(t.obs)[idx], np.asarray(t.action)[idx])

        def _require_source_group(self, source, groups) -> None:
            if source_group not in groups:
                raise TransferError(
                    f"{source.name} -> {self.name}: {self.name} guides its targets with the offline "
                    f"learner's frozen {source_group!r}, and {source.name} has none")

        def check_start(self, dataset, source=None) -> None:
            """Before the run writes anything (and before the C-VAE is fitted): a C-VAE at
            ``cvae_path`` fitted with other settings, and a ``source`` without the group whose
            frozen copy guides the targets."""
            super().check_start(dataset, source)
            if source is not None:
                self._require_source_group(source, source.param_groups())
            if self.config.coefficient == "cvae" and self.config.cvae_path:
                from smac_jax.samg.store import check_saved_cvae

                check_saved_cvae(self.config.cvae_path, dataset, self.config.cvae)

        def stand_in_models(self) -> None:
            """An unfitted C-VAE and default normals, for the start checks."""
            super().stand_in_models()
            if self.cvae_params is None:
                self.set_cvae(cvae_mod.init_cvae(jax.random.PRNGKey(0), self.obs_dim, self.act_dim, self.config.cvae),
                              confidence.default_stats(cvae_mod.latent_dim(self.config.cvae, self.act_dim)))

        def set_cvae(self, params, stats, reference_obs=None, reference_action=None) -> None:
            """Use an already-fitted C-VAE and its normals (e.g. in a notebook or a test); the
            optional reference rows are what the adaptive update refits the normals on."""
            self.cvae_params = jax.tree.map(jnp.asarray, params)
            self.cvae_stats = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), dict(stats))
            if reference_obs is not None:
                self.reference = (np.asarray(reference_obs, np.float32), np.asarray(reference_action, np.float32))

        # -- state --------------------------------------------------------------------------
        def init(self, key):
            state = super().init(key)
            params = dict(state.params)
            params[frozen_group] = params[source_group]
            if self.cvae_params is None:  # an unfitted model (fine until guidance is switched on)
                params["cvae"] = cvae_mod.init_cvae(jax.random.fold_in(key, 0x5A36), self.obs_dim, self.act_dim,
                                                    self.config.cvae)
                params["cvae_stats"] = confidence.default_stats(cvae_mod.latent_dim(self.config.cvae, self.act_dim))
            else:
                params["cvae"], params["cvae_stats"] = self.cvae_params, self.cvae_stats
            params["guidance"] = jnp.zeros((), jnp.float32)
            return state.replace(params=params, extra={**state.extra, "period_target": params[target_group]})

        def transfer(self, key, src_state, src_learner):
            """The base learner's hand-over, plus the frozen offline critic (value) and guidance on."""
            if self.config.coefficient == "cvae" and self.cvae_params is None:
                raise ConfigError(f"{self.name} needs its C-VAE: call learner.prepare(dataset, workdir) "
                                  "(the pipeline does) or learner.set_cvae(params, stats) first")
            state = super().transfer(key, src_state, src_learner)
            src = src_state.params
            self._require_source_group(src_learner, src)
            check_same_structure(state.params[frozen_group], src[source_group], source_group,
                                 src_learner.name, self.name)
            params = {**state.params, frozen_group: src[source_group], "guidance": jnp.ones((), jnp.float32)}
            return state.replace(params=params, extra={**state.extra, "period_target": params[target_group]})

        # -- update -------------------------------------------------------------------------
        def update(self, state, batch, key):
            """The base learner's update with the guided target; p computed once per minibatch."""
            p = sg(guidance_coefficient(state.params, batch, self.config))
            st, info = super().update(state.replace(params={**state.params, "samg_p": p}), batch, key)
            params = dict(st.params)
            params.pop("samg_p")
            info = {**info, "samg_p_mean": p.mean(), "samg_p_nonzero": (p > 0).mean()}
            return st.replace(params=params), info

        # -- the adaptive update ------------------------------------------------------------
        def bellman_error(self, params, period_target, batch, key) -> jax.Array:
            """|min_i Q_i(s, a) - y| per row, y the unguided TD target under ``period_target``."""
            y = td_target_fn({**params, target_group: period_target}, batch, key, self.config)
            q = networks.critic_net(self.config).apply(params["critic"], batch.obs, batch.action).min(0)
            return jnp.abs(q - y)

        def adaptive_step(self, state, buffer, key, reference_obs, reference_action, n_rows: int):
            """One seed's adaptive update on the last ``n_rows`` rows of ``buffer`` (pure)."""
            batch, valid = adaptive.period_rows(buffer, n_rows)
            params = state.params
            k_err, k_fit = jax.random.split(key)
            p = confidence.coefficient(params["cvae"], params["cvae_stats"], batch.obs, batch.action, self.config)
            err = self.bellman_error(params, state.extra["period_target"], batch, k_err)
            new_cvae, new_stats, info = adaptive.adaptive_update(
                params["cvae"], params["cvae_stats"], batch, valid, p, err, reference_obs, reference_action,
                k_fit, self.config)
            params = {**params, "cvae": new_cvae, "cvae_stats": new_stats}
            return state.replace(params=params, extra={**state.extra, "period_target": params[target_group]}), info

        def host_update(self, state, buffer, key, n_rows: int):
            """One seed's adaptive update, run between chunks of the online loop at every multiple
            of ``host_update_every`` environment steps (:meth:`periodic_host_update`, which
            leaves the per-seed summary in ``self.last_host_update``)."""
            return self.adaptive_step(state, buffer, key, *self.reference, n_rows=n_rows)

        def host_update_keys(self, step: int, n_lanes: int):
            return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(int(self.config.cvae.seed)), step), n_lanes)

    SAMGLearner.__name__ = SAMGLearner.__qualname__ = f"SAMG{base.__name__}"
    SAMGLearner.__doc__ = f"SAMG around :class:`{base.__module__}.{base.__name__}` (module docstring)."
    return register(name)(SAMGLearner)


SAMGSAC = make_samg_learner("samg_sac", sac.SAC, sac.td_target)
SAMGAWAC = make_samg_learner("samg_awac", awac.AWAC, awac.td_target)
SAMGCQL = make_samg_learner("samg_cql", cql.CQL, cql.td_target)
SAMGCalQL = make_samg_learner("samg_calql", calql.CalQL, cql.td_target)
SAMGIQL = make_samg_learner("samg_iql", iql.IQL, iql.td_target, kind="v")
