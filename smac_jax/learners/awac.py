"""AWAC (Nair et al., 2020), also registered as "awr": advantage-weighted actor, SAC-style critic
without entropy (docs/algorithms.md, "AWAC / AWR").

* critic: y = r + gamma (1 - terminated) min_i Qbar_i(s', a'),  a' ~ pi(s'); loss
  sum_i mean_batch (Q_i(s, a) - y)^2 (SAC's clipped double-Q backup with no entropy term).
* actor: -mean_batch[ min(exp(A(s, a) / lambda), max_weight) log pi(a | s) ] on dataset / replay
  actions, A(s, a) = min_i Q_i(s, a) - V(s), V(s) = min_i Q_i(s, a~), a~ ~ pi(s) (one sample),
  weights detached; lambda = 1.0, max_weight = 100.

Dataset actions at the edge of the box. Actions are rescaled to [-1, 1] and many datasets hold
actions exactly at +-1, where the tanh-Gaussian log-density is undefined (atanh(+-1) is infinite;
distrax returns NaN). :func:`clipped_log_prob` clips the action to +-(1 - 1e-6) first (in float32
that is 0.99999899) so log pi(a|s) stays finite; the same helper serves IQL's policy extraction.

"awr": the SMAC paper's regret table has an online learner named "AWR" next to SAC, TD3 and
TD3+BC. Peng et al.'s AWR fits V by regression on (on-policy) returns; the off-policy,
critic-based form of advantage-weighted regression used for fine-tuning from a replay buffer is
exactly AWAC, so "awr" is this algorithm under its own name (a subclass that changes nothing, so
that ``learner.name`` and logs say "awr").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners.base import ensemble_td_loss, TrainState, above, base_config, checked_loss, register, sg
from smac_jax.learners.sac import SAC, target_critic_q
from smac_jax.types import Transitions

#: Dataset actions are clipped to +-LOG_PROB_ACTION_CLIP before a tanh-Gaussian log-density.
LOG_PROB_ACTION_CLIP = 1.0 - 1e-6


def clipped_log_prob(dist, action: jax.Array) -> jax.Array:
    """log pi(clip(a, -(1 - 1e-6), 1 - 1e-6) | s): finite for actions on the box's boundary."""
    return dist.log_prob(jnp.clip(action, -LOG_PROB_ACTION_CLIP, LOG_PROB_ACTION_CLIP))


def advantage_weights(adv: jax.Array, inv_temperature: float, max_weight: float) -> jax.Array:
    """min(exp(inv_temperature * A), max_weight) (AWAC: 1/lambda; IQL: beta); overflow to inf is
    harmless since the minimum is taken and the weights are used without gradient."""
    return jnp.minimum(jnp.exp(inv_temperature * adv), max_weight)


def td_target(params, batch: Transitions, key, config, next_q_fn=target_critic_q) -> jax.Array:
    """y = r + gamma (1 - terminated) min_i Qbar_i(s', a'), a' ~ pi(s') (no entropy bonus);
    ``next_q_fn`` supplies the Q term (default :func:`smac_jax.learners.sac.target_critic_q`)."""
    act_dim = batch.action.shape[-1]
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.next_obs)
    next_a = dist.sample(seed=key)
    next_q = next_q_fn(params, batch, batch.next_obs, next_a, config)
    return batch.reward + config.gamma * (1.0 - batch.terminated) * next_q


@checked_loss
def critic_loss(params, batch: Transitions, key, config, next_q_fn=target_critic_q):
    """sum_i mean_batch (Q_i(s, a) - y)^2 with y from :func:`td_target` (no gradient through y)."""
    return ensemble_td_loss(params["critic"], batch, td_target(params, batch, key, config, next_q_fn), config)


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """-mean_s min(exp((min_i Q_i(s, a) - min_i Q_i(s, a~)) / lambda), max_weight) log pi(a|s),
    a from the batch (clipped, see :func:`clipped_log_prob`), a~ ~ pi(s); weights detached."""
    act_dim = batch.action.shape[-1]
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.obs)
    critic = networks.critic_net(config)
    v = critic.apply(params["critic"], batch.obs, dist.sample(seed=key)).min(0)
    q = critic.apply(params["critic"], batch.obs, batch.action).min(0)
    adv = sg(q - v)
    w = sg(advantage_weights(adv, 1.0 / config.awac_lambda, config.max_weight))
    logp = clipped_log_prob(dist, batch.action)
    loss = -(w * logp).mean()
    return loss, {
        "actor_loss": loss, "adv_mean": adv.mean(), "weight_mean": w.mean(),
        "weight_clipped_frac": (w >= config.max_weight).mean(), "log_prob_data": logp.mean(),
    }


@register("awac")
class AWAC(SAC):
    """SAC's structure (Gaussian actor, clipped double-Q, Polyak targets) with AWAC's two losses
    and no temperature: parameter groups ``actor``, ``critic``, ``target_critic``."""
    bounds = {"awac_lambda": above(0), "max_weight": above(0)}

    critic_loss_fn = staticmethod(critic_loss)
    actor_loss_fn = staticmethod(actor_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = base_config()
        cfg.awac_lambda = 1.0  # temperature lambda of the actor's weights exp(A / lambda), > 0
        cfg.max_weight = 100.0  # upper clip of the advantage weights, > 0
        cfg.transfer_log_std_init = -1.0  # log-std given to a deterministic actor handed over (as SAC's)
        return cfg

    lr_fields = {"actor": "actor_lr", "critic": "critic_lr"}

    def init_params(self, key) -> dict:
        return self.actor_critic_params(*jax.random.split(key))

    def update_actor_and_temperature(self, state: TrainState, batch, key):
        """The actor step only (AWAC has no temperature); SAC.update calls it after the critic."""
        params, opt_state, info = self.grad_step("actor", self.actor_loss_fn, state.params, state.opt_state, batch, key)
        return state.replace(params=params, opt_state=opt_state), info


@register("awr")
class AWR(AWAC):
    """The SMAC paper's online "AWR" learner: AWAC under its own name (see the module docstring)."""
