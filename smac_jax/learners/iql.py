"""Implicit Q-Learning (Kostrikov et al., 2022), offline and online (docs/algorithms.md, IQL).

Three losses, applied in this order every step (then Polyak-averaging the target critic):

* value:  mean_batch L_2^tau(min_i Qbar_i(s, a) - V(s)),  L_2^tau(u) = |tau - 1(u < 0)| u^2,
  tau = ``expectile`` (0.7); Qbar is the target critic.
* actor (advantage-weighted regression), w = min(exp(beta (min_i Qbar_i(s, a) - V(s))), 100),
  detached, beta = ``beta`` (3.0):
  - ``policy_extraction="gaussian"`` (default): -mean_batch w log pi(a|s), with dataset actions
    clipped to +-(1 - 1e-6) (:func:`smac_jax.learners.awac.clipped_log_prob`);
  - ``policy_extraction="deterministic_mean"``: mean_batch w mean_dims (tanh(mu(s)) - a)^2, which
    trains only the Gaussian's mean (its log-std head gets no gradient). Acting stochastically then
    adds N(0, ``expl_noise``) to tanh(mu(s)) (TD3-style) instead of sampling the untrained log-std.
* critic: sum_i mean_batch (Q_i(s, a) - y)^2,  y = r + gamma (1 - terminated) V(s').

The IQL paper fine-tunes online with these same losses, so the learner is used unchanged in both
phases. Not reproduced (decisions): the paper's cosine decay of the actor learning rate and actor
dropout; the actor is the library's tanh-Gaussian.

Hand-over into IQL from a learner with no ``value`` group (SAC, TD3, CQL, ...): the generic
transfer keeps IQL's freshly initialised V. Until V has caught up with the transferred critic, the
critic's target r + gamma V(s') and the actor's advantages Q - V are meaningless, which can undo the
transferred critic. ``value_warmup_steps`` (default 0: train everything from the first step) bridges
that: for that many update steps after such a hand-over only V is trained (expectile regression on
the transferred target critic), while the actor, critic and target critic are held. A hand-over
from a learner that has a ``value`` group (IQL itself) copies it and never warms up. Hand-over out
of IQL to a learner without ``value`` drops it (generic transfer).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners.awac import advantage_weights, clipped_log_prob
from smac_jax.learners.base import (Bound, ConfigError, Learner, TrainState, above, at_least, base_config, count, polyak,
                                   checked_loss, register, sg)
from smac_jax.learners.sac import gaussian_act
from smac_jax.types import Transitions

POLICY_EXTRACTIONS = ("gaussian", "deterministic_mean")


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """L_2^tau(u) = |tau - 1(u < 0)| u^2, elementwise."""
    return jnp.where(diff < 0, 1.0 - expectile, expectile) * diff**2


def state_value(params, obs: jax.Array, config) -> jax.Array:
    return networks.value_net(config).apply(params["value"], obs)[0]


def advantage(params, batch: Transitions, config) -> jax.Array:
    """min_i Qbar_i(s, a) - V(s) (target critic), without gradient."""
    q = networks.critic_net(config).apply(params["target_critic"], batch.obs, batch.action).min(0)
    return sg(q - state_value(params, batch.obs, config))


@checked_loss
def value_loss(params, batch: Transitions, key, config):
    """mean_batch L_2^tau(min_i Qbar_i(s, a) - V(s)); gradient to V only."""
    q = sg(networks.critic_net(config).apply(params["target_critic"], batch.obs, batch.action).min(0))
    v = state_value(params, batch.obs, config)
    loss = expectile_loss(q - v, config.expectile).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def next_state_value(params, batch: Transitions, next_obs, config) -> jax.Array:
    """V(s'): the bootstrap value of the TD target, the default ``next_v_fn`` of :func:`td_target`
    (a wrapper that changes only the bootstrap value, SAMG, passes its own with this signature)."""
    return state_value(params, next_obs, config)


def td_target(params, batch: Transitions, key, config, next_v_fn=next_state_value) -> jax.Array:
    """y = r + gamma (1 - terminated) V(s'), V(s') from ``next_v_fn``."""
    return batch.reward + config.gamma * (1.0 - batch.terminated) * next_v_fn(params, batch, batch.next_obs, config)


@checked_loss
def critic_loss(params, batch: Transitions, key, config, next_v_fn=next_state_value):
    """sum_i mean_batch (Q_i(s, a) - y)^2, y = r + gamma (1 - terminated) V(s') (no gradient)."""
    y = sg(td_target(params, batch, key, config, next_v_fn))
    q = networks.critic_net(config).apply(params["critic"], batch.obs, batch.action)
    loss = ((q - y[None]) ** 2).mean(axis=1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": y.mean()}


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """Advantage-weighted regression, w = min(exp(beta A), max_weight): -mean w log pi(a|s)
    ("gaussian") or mean w mean_dims (tanh(mu(s)) - a)^2 ("deterministic_mean")."""
    act_dim = batch.action.shape[-1]
    adv = advantage(params, batch, config)
    w = advantage_weights(adv, config.beta, config.max_weight)
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.obs)
    if config.policy_extraction == "deterministic_mean":
        per_sample = ((dist.mode() - batch.action) ** 2).mean(-1)
    else:
        per_sample = -clipped_log_prob(dist, batch.action)
    loss = (w * per_sample).mean()
    return loss, {
        "actor_loss": loss, "adv_mean": adv.mean(), "weight_mean": w.mean(),
        "weight_clipped_frac": (w >= config.max_weight).mean(),
    }


@register("iql")
class IQL(Learner):
    actor_kind = "gaussian"
    bounds = {"beta": at_least(0), "max_weight": above(0), "expl_noise": at_least(0),
              "expectile": Bound(0, 1, lo_open=True, hi_open=True), "value_warmup_steps": count(0)}
    value_loss_fn = staticmethod(value_loss)
    critic_loss_fn = staticmethod(critic_loss)
    actor_loss_fn = staticmethod(actor_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = base_config()
        cfg.expectile = 0.7  # tau of the value's expectile loss, in (0, 1); 0.5 = mean regression
        cfg.beta = 3.0  # inverse temperature of the actor's weights exp(beta A), >= 0
        cfg.max_weight = 100.0  # upper clip of the advantage weights, > 0
        cfg.policy_extraction = "gaussian"  # "gaussian" (weighted log-likelihood) | "deterministic_mean"
        cfg.value_lr = 3e-4  # learning rate of the value network V's optimiser, > 0
        # std of the Gaussian noise added to tanh(mean) when acting stochastically; read with
        # policy_extraction="deterministic_mean" only
        cfg.expl_noise = 0.1
        # update steps after a hand-over from a learner without V during which only V is trained
        # (actor, critic and target critic held); 0 = off
        cfg.value_warmup_steps = 0
        cfg.transfer_log_std_init = -1.0  # log-std given to a deterministic actor handed over (as SAC's)
        return cfg

    def __init__(self, config, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        if config.policy_extraction not in POLICY_EXTRACTIONS:
            raise ConfigError(
                f"iql: policy_extraction must be one of {POLICY_EXTRACTIONS}, got {config.policy_extraction!r}"
            )

    lr_fields = {"actor": "actor_lr", "critic": "critic_lr", "value": "value_lr"}

    def init_params(self, key) -> dict:
        k_a, k_c, k_v = jax.random.split(key, 3)
        params = self.actor_critic_params(k_a, k_c)
        return {**params, "value": networks.value_net(self.config).init(k_v, jnp.zeros((1, self.obs_dim)))}

    def init(self, key) -> TrainState:
        # value_warmup_until: update steps before which only V trains (set by ``transfer``).
        return super().init(key).replace(extra={"value_warmup_until": jnp.zeros((), jnp.int32)})

    def transfer(self, key, src_state: TrainState, src_learner: Learner) -> TrainState:
        """Generic hand-over; V is kept fresh when the source has none, then warmed up (docstring)."""
        state = super().transfer(key, src_state, src_learner)
        warmup = 0 if "value" in src_state.params else self.config.value_warmup_steps
        return state.replace(extra={**state.extra, "value_warmup_until": jnp.asarray(warmup, jnp.int32)})

    def update(self, state: TrainState, batch: Transitions, key):
        params, opt_state = state.params, state.opt_state
        params, opt_state, v_info = self.grad_step("value", self.value_loss_fn, params, opt_state, batch, key)
        params, opt_state, a_info = self.grad_step("actor", self.actor_loss_fn, params, opt_state, batch, key)
        params, opt_state, c_info = self.grad_step("critic", self.critic_loss_fn, params, opt_state, batch, key)
        params["target_critic"] = polyak(params["target_critic"], params["critic"], self.config.tau)
        info = {**v_info, **a_info, **c_info}
        if self.config.value_warmup_steps > 0:
            # During a value warm-up (after a hand-over from a learner without V) hold all but V.
            warm = state.step < state.extra["value_warmup_until"]
            hold = lambda new, old: jax.tree.map(lambda n, o: jnp.where(warm, o, n), new, old)
            for g in ("actor", "critic", "target_critic"):
                params[g] = hold(params[g], state.params[g])
            for g in ("actor", "critic"):
                opt_state[g] = hold(opt_state[g], state.opt_state[g])
            info["value_warmup"] = warm.astype(jnp.float32)
        return TrainState(params, opt_state, state.step + 1, state.extra), info

    def act(self, state: TrainState, obs, key, deterministic: bool):
        if self.config.policy_extraction == "deterministic_mean" and not deterministic:
            a = networks.gaussian_actor(self.config, self.act_dim).apply(state.params["actor"], obs).mode()
            return jnp.clip(a + self.config.expl_noise * jax.random.normal(key, a.shape), -1.0, 1.0)
        return gaussian_act(self.config, self.act_dim, state.params["actor"], obs, key, deterministic)
