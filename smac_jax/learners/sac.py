"""Soft Actor-Critic (Haarnoja et al., 2018): clipped double-Q, automatic temperature (docs/algorithms.md, SAC).

The three losses are plain functions of ``(params, batch, key, config)``; ``params`` is the
learner's parameter dict (``actor``, ``critic``, ``target_critic``, ``log_temp``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners.base import (ensemble_td_loss, Learner, TrainState, above, base_config, checked_loss, polyak,
                                    register, sg)
from smac_jax.types import Transitions


def target_entropy(config, act_dim: int) -> float:
    te = config.target_entropy
    return -float(act_dim) if te is None else float(te)


def temperature(params) -> jax.Array:
    return jnp.exp(params["log_temp"])


def target_critic_q(params, batch: Transitions, next_obs, next_a, config) -> jax.Array:
    """min_i Qbar_i(s', a'): the bootstrap value of the TD targets of SAC, AWAC and CQL.

    ``next_obs`` / ``next_a`` may carry leading sample axes in front of the batch axis (CQL's max
    backup); ``batch`` is the minibatch they belong to. This is the default ``next_q_fn`` of
    :func:`td_target`; a wrapper that changes only the bootstrap value (SAMG,
    :mod:`smac_jax.learners.samg`) passes its own function with this signature."""
    return networks.critic_net(config).apply(params["target_critic"], next_obs, next_a).min(0)


def td_target(params, batch: Transitions, key, config, next_q_fn=target_critic_q) -> jax.Array:
    """y = r + gamma (1 - terminated) [min_i Qbar_i(s', a') - T log pi(a'|s')], a' ~ pi(s');
    ``next_q_fn`` supplies the bracket's Q term (default :func:`target_critic_q`)."""
    act_dim = batch.action.shape[-1]
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.next_obs)
    next_a, next_logp = dist.sample_and_log_prob(seed=key)
    next_q = next_q_fn(params, batch, batch.next_obs, next_a, config)
    if config.backup_entropy:
        next_q = next_q - temperature(params) * next_logp
    return batch.reward + config.gamma * (1.0 - batch.terminated) * next_q


@checked_loss
def critic_loss(params, batch: Transitions, key, config, next_q_fn=target_critic_q):
    """sum_i mean_batch (Q_i(s, a) - y)^2 with y from :func:`td_target` (no gradient through y)."""
    return ensemble_td_loss(params["critic"], batch, td_target(params, batch, key, config, next_q_fn), config)


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """mean_s [T log pi(a~|s) - min_i Q_i(s, a~)], a~ ~ pi(s) reparameterised."""
    act_dim = batch.action.shape[-1]
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.obs)
    a, logp = dist.sample_and_log_prob(seed=key)
    q = networks.critic_net(config).apply(params["critic"], batch.obs, a).min(0)
    loss = (sg(temperature(params)) * logp - q).mean()
    return loss, {"actor_loss": loss, "entropy": -logp.mean()}


@checked_loss
def temperature_loss(params, batch: Transitions, key, config):
    """T * (H(pi) - target_entropy), H estimated by -log pi(a~|s) (no gradient to the actor)."""
    act_dim = batch.action.shape[-1]
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.obs)
    _, logp = dist.sample_and_log_prob(seed=key)
    entropy = sg(-logp.mean())
    loss = temperature(params) * (entropy - target_entropy(config, act_dim))
    return loss, {"temperature": temperature(params), "temperature_loss": loss}


def gaussian_act(config, act_dim, actor_params, obs, key, deterministic: bool):
    dist = networks.gaussian_actor(config, act_dim).apply(actor_params, obs)
    return dist.mode() if deterministic else dist.sample(seed=key)


@register("sac")
class SAC(Learner):
    actor_kind = "gaussian"
    bounds = {"init_temperature": above(0)}
    #: The critic loss this learner minimises; a variant (e.g. SMAC) swaps only this.
    critic_loss_fn = staticmethod(critic_loss)
    actor_loss_fn = staticmethod(actor_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = base_config()
        cfg.init_temperature = 1.0  # starting entropy temperature T = exp(log_temp), > 0
        cfg.target_entropy = ml_collections.config_dict.placeholder(float)  # nats; None (unset) = -|A|
        cfg.backup_entropy = True  # subtract T log pi(a'|s') in the TD target (SAC's soft target)
        cfg.temp_lr = 3e-4  # learning rate of the temperature's optimiser, > 0
        # log-std given to a deterministic actor (TD3, TD3+BC) handed over to this learner: the bias of a
        # new zero-weight log-std head, i.e. a state-independent std exp(transfer_log_std_init)
        cfg.transfer_log_std_init = -1.0
        return cfg

    lr_fields = {"actor": "actor_lr", "critic": "critic_lr", "log_temp": "temp_lr"}

    def init_params(self, key) -> dict:
        params = self.actor_critic_params(*jax.random.split(key))
        return {**params, "log_temp": jnp.asarray(jnp.log(self.config.init_temperature), jnp.float32)}

    def update_critic(self, state: TrainState, batch, key):
        params, opt_state, info = self.grad_step("critic", self.critic_loss_fn, state.params, state.opt_state, batch, key)
        return state.replace(params=params, opt_state=opt_state), info

    def update_actor_and_temperature(self, state: TrainState, batch, key):
        params, opt_state, info = self.grad_step("actor", self.actor_loss_fn, state.params, state.opt_state, batch, key)
        params, opt_state, t_info = self.grad_step("log_temp", temperature_loss, params, opt_state, batch, key)
        return state.replace(params=params, opt_state=opt_state), {**info, **t_info}

    def update(self, state: TrainState, batch: Transitions, key):
        k_c, k_a = jax.random.split(key)
        state, c_info = self.update_critic(state, batch, k_c)
        state, a_info = self.update_actor_and_temperature(state, batch, k_a)
        params = dict(state.params)
        params["target_critic"] = polyak(params["target_critic"], params["critic"], self.config.tau)
        return state.replace(params=params, step=state.step + 1), {**c_info, **a_info}

    def act(self, state: TrainState, obs, key, deterministic: bool):
        return gaussian_act(self.config, self.act_dim, state.params["actor"], obs, key, deterministic)
