"""TD3 (Fujimoto et al., 2018): target policy smoothing, clipped double-Q, delayed actor (docs/algorithms.md, TD3)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners.base import (ensemble_td_loss, Learner, TrainState, at_least, base_config, checked_loss, count,
                                    polyak, register)
from smac_jax.types import Transitions


def td_target(params, batch: Transitions, key, config) -> jax.Array:
    """y = r + gamma (1 - terminated) min_i Qbar_i(s', clip(pi_bar(s') + clip(eps, -c, c), -1, 1))."""
    act_dim = batch.action.shape[-1]
    next_a = networks.deterministic_actor(config, act_dim).apply(params["target_actor"], batch.next_obs)
    noise = jnp.clip(config.target_noise * jax.random.normal(key, next_a.shape), -config.noise_clip, config.noise_clip)
    next_a = jnp.clip(next_a + noise, -1.0, 1.0)
    next_q = networks.critic_net(config).apply(params["target_critic"], batch.next_obs, next_a).min(0)
    return batch.reward + config.gamma * (1.0 - batch.terminated) * next_q


@checked_loss
def critic_loss(params, batch: Transitions, key, config):
    """sum_i mean_batch (Q_i(s, a) - y)^2 with y from :func:`td_target` (no gradient through y)."""
    return ensemble_td_loss(params["critic"], batch, td_target(params, batch, key, config), config)


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """-mean_s Q_1(s, pi(s)) (the first critic, as in TD3)."""
    act_dim = batch.action.shape[-1]
    a = networks.deterministic_actor(config, act_dim).apply(params["actor"], batch.obs)
    q = networks.critic_member(config, params["critic"], batch.obs, a, 0)
    loss = -q.mean()
    return loss, {"actor_loss": loss}


@register("td3")
class TD3(Learner):
    actor_kind = "deterministic"
    bounds = {"policy_delay": count(), "target_noise": at_least(0), "noise_clip": at_least(0),
              "expl_noise": at_least(0)}
    critic_loss_fn = staticmethod(critic_loss)
    actor_loss_fn = staticmethod(actor_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = base_config()
        cfg.target_noise = 0.2  # std of the Gaussian noise added to the target action (target policy smoothing)
        cfg.noise_clip = 0.5  # target-smoothing noise clipped to [-noise_clip, noise_clip] (in [-1, 1] action units)
        cfg.policy_delay = 2  # actor and target-network updates every policy_delay critic updates, >= 1
        cfg.expl_noise = 0.1  # std of the Gaussian noise added to tanh(mean) when acting online
        return cfg

    def init_params(self, key) -> dict:
        params = self.actor_critic_params(*jax.random.split(key))
        return {**params, "target_actor": params["actor"]}

    @property
    def update_period(self) -> int:
        return self.config.policy_delay

    def _actor_and_targets(self, params, opt_state, batch: Transitions, key):
        """The delayed half of an update: an actor step and both Polyak target updates."""
        params, opt_state, info = self.grad_step("actor", self.actor_loss_fn, params, opt_state, batch, key)
        tau = self.config.tau
        params["target_actor"] = polyak(params["target_actor"], params["actor"], tau)
        params["target_critic"] = polyak(params["target_critic"], params["critic"], tau)
        return params, opt_state, info

    def update(self, state: TrainState, batch: Transitions, key):
        k_c, k_a = jax.random.split(key)
        params, opt_state, info = self.grad_step("critic", self.critic_loss_fn, state.params, state.opt_state, batch, k_c)
        # Delayed actor and target updates: computed every step, applied every ``policy_delay``
        # steps (a select rather than a cond, since under vmap a cond would run both branches;
        # the offline loop skips the computation instead, see update_phase).
        stepped, stepped_opt, a_info = self._actor_and_targets(dict(params), dict(opt_state), batch, k_a)
        do = (state.step % self.config.policy_delay) == 0
        pick = lambda new, old: jax.tree.map(lambda n, o: jnp.where(do, n, o), new, old)
        params, opt_state = pick(stepped, params), pick(stepped_opt, opt_state)
        return TrainState(params, opt_state, state.step + 1, state.extra), {**info, **a_info}

    def update_phase(self, state: TrainState, batch: Transitions, key, phase: int):
        """``update`` for a state known to be at ``step % policy_delay == phase``: the actor and
        target work runs only at phase 0 instead of being computed and discarded."""
        k_c, k_a = jax.random.split(key)
        params, opt_state, info = self.grad_step("critic", self.critic_loss_fn, state.params, state.opt_state, batch, k_c)
        if phase == 0:
            params, opt_state, a_info = self._actor_and_targets(params, opt_state, batch, k_a)
            info = {**info, **a_info}
        return TrainState(params, opt_state, state.step + 1, state.extra), info

    def act(self, state: TrainState, obs, key, deterministic: bool):
        a = networks.deterministic_actor(self.config, self.act_dim).apply(state.params["actor"], obs)
        if deterministic:
            return a
        return jnp.clip(a + self.config.expl_noise * jax.random.normal(key, a.shape), -1.0, 1.0)
