"""SAC+ML: SAC with a maximum-likelihood regulariser, ACA's offline learner (Yu & Zhang,
"Actor-Critic Alignment for Offline-to-Online RL", section 5.1, eq. 4-6, and appendix A.1;
docs/aca.md).

Critic and temperature: SAC's (clipped double-Q target with the entropy term, eq. 5; automatic
temperature with target entropy -|A|, eq. 6). Actor (eq. 4):

    L(theta) = lambda * mean_s [T log pi(a~|s) - min_i Q_i(s, a~)] - mean_(s, a_D) log pi(a_D|s),
    a~ ~ pi(.|s) reparameterised,  lambda = w / mean_(s, a) |min_i Q_i(s, a)|  (no gradient), w = 30.

State baseline Z (eq. 8-9, trained in the same update step, after the actor, as in the paper's
Algorithm 1; ACA's online critic starts from it, :mod:`smac_jax.learners.aca`): an ensemble of
``num_critics`` (2) value networks Z_i(s), parameter group ``baseline``, trained on

    sum_i mean_batch (sg[log pi(a_D|s)] + Z_i(s) - y)^2,
    y = sg(r + gamma (1 - terminated) [log pi(a'|s') + min_j Z_j(s')]),  a' ~ pi(.|s'),

with the current Z (no target network). It does not touch SAC+ML's other losses (``train_baseline``
= False drops it).

Decisions (config fields):
* ``ml_lambda_actions`` = "dataset": the paper writes lambda = w / E_{(s,a)~d} |Q_omega(s, a)|,
  the expectation over the minibatch's *dataset* pairs (as in TD3+BC's normaliser, but at a_D);
  "policy" uses min_i Q(s, a~) at the policy's sample instead.
* ``ml_weight`` = 30 (w, ACA's Table 9).
* ``action_clip_eps`` = 1e-6: dataset actions are clipped to [-(1 - eps), 1 - eps] before the
  log-prob, since log pi(a|s) is -inf / nan at |a| = 1 under a tanh-Gaussian
  (:func:`smac_jax.learners.bc.dataset_log_prob`).
* The mean |Q| is floored at 1e-6 so lambda stays finite when every Q is 0 (e.g. at init).
* Update order is SAC's (critic, actor, temperature), then the baseline; the paper's Algorithm 1
  steps the temperature first. All use the same minibatch.
* ``baseline_backup_entropy`` = False: the paper's eq. 9 target has no entropy term. True adds
  ``- T log pi(a'|s')`` (T the current temperature) inside the brackets.
* ``baseline_logp_floor`` = None: the paper's CQL -> ACA variant (section 6.3) floors log pi at 0
  in eq. 8; a number floors both log pi terms at it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners import sac
from smac_jax.learners.base import ConfigError, TrainState, at_least, checked_loss, register, sg
from smac_jax.learners.bc import ACTION_CLIP_EPS, dataset_log_prob
from smac_jax.optim import make_optimizer
from smac_jax.types import Transitions

LAMBDA_Q_FLOOR = 1e-6
LAMBDA_ACTIONS = ("dataset", "policy")


def ml_lambda(q_abs_mean, config) -> jnp.ndarray:
    """lambda = w / max(mean |min_i Q|, 1e-6), no gradient."""
    return sg(config.ml_weight / jnp.maximum(q_abs_mean, LAMBDA_Q_FLOOR))


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """lambda * mean[T log pi(a~|s) - min_i Q_i(s, a~)] - mean log pi(clip(a_D)|s) (eq. 4)."""
    act_dim = batch.action.shape[-1]
    critic = networks.critic_net(config)
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.obs)
    a, logp = dist.sample_and_log_prob(seed=key)
    q_pi = critic.apply(params["critic"], batch.obs, a).min(0)
    if config.ml_lambda_actions == "dataset":
        q_ref = critic.apply(params["critic"], batch.obs, batch.action).min(0)
    elif config.ml_lambda_actions == "policy":
        q_ref = q_pi
    else:
        raise ConfigError(f"ml_lambda_actions must be one of {LAMBDA_ACTIONS}, got {config.ml_lambda_actions!r}")
    lam = ml_lambda(jnp.abs(q_ref).mean(), config)
    rl = (sg(sac.temperature(params)) * logp - q_pi).mean()
    logp_data = dataset_log_prob(config, params["actor"], batch.obs, batch.action)
    ml = -logp_data.mean()
    loss = lam * rl + ml
    return loss, {
        "actor_loss": loss, "entropy": -logp.mean(), "ml_lambda": lam, "actor_rl_loss": rl,
        "ml_log_prob": logp_data.mean(),
    }


def baseline_net(config):
    """Z: an ensemble of ``num_critics`` state-value networks (the critic's widths and layer norm)."""
    return networks.value_net(config, config.num_critics)


def _floor_logp(logp, config):
    floor = config.baseline_logp_floor
    return logp if floor is None else jnp.maximum(logp, floor)


@checked_loss
def baseline_loss(params, batch: Transitions, key, config):
    """sum_i mean_batch (sg[log pi(a_D|s)] + Z_i(s) - y)^2, y = r + gamma (1 - terminated)
    [log pi(a'|s') + min_j Z_j(s') (- T log pi(a'|s') with ``baseline_backup_entropy``)],
    a' ~ pi(.|s'), y computed with the current Z under stop-gradient (eq. 8-9).

    ``params`` needs ``actor`` and ``baseline`` (and ``log_temp`` with ``baseline_backup_entropy``)."""
    act_dim = batch.action.shape[-1]
    z_net = baseline_net(config)
    logp_data = sg(_floor_logp(dataset_log_prob(config, params["actor"], batch.obs, batch.action), config))
    dist = networks.gaussian_actor(config, act_dim).apply(params["actor"], batch.next_obs)
    _, next_logp = dist.sample_and_log_prob(seed=key)
    next_v = _floor_logp(next_logp, config) + z_net.apply(params["baseline"], batch.next_obs).min(0)
    if config.baseline_backup_entropy:
        next_v = next_v - sac.temperature(params) * next_logp
    y = sg(batch.reward + config.gamma * (1.0 - batch.terminated) * next_v)
    z = z_net.apply(params["baseline"], batch.obs)  # (E, B)
    loss = ((logp_data[None] + z - y[None]) ** 2).mean(axis=1).sum()
    return loss, {"baseline_loss": loss, "baseline_mean": z.mean(), "baseline_target_mean": y.mean()}


@register("sacml")
class SACML(sac.SAC):
    bounds = {"ml_weight": at_least(0)}
    actor_loss_fn = staticmethod(actor_loss)

    def __init__(self, config, obs_dim: int, act_dim: int):
        if config.ml_lambda_actions not in LAMBDA_ACTIONS:
            raise ConfigError(f"sacml: ml_lambda_actions must be one of {LAMBDA_ACTIONS}, got {config.ml_lambda_actions!r}")
        super().__init__(config, obs_dim, act_dim)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = super().default_config()
        cfg.ml_weight = 30.0  # w in lambda = w / mean |Q| (ACA's Table 9: 30), >= 0
        cfg.ml_lambda_actions = "dataset"  # actions of lambda's mean |Q|: "dataset" (a_D, the paper's) | "policy"
        cfg.action_clip_eps = ACTION_CLIP_EPS  # dataset actions clipped to +-(1 - eps) before log pi(a_D|s)
        cfg.train_baseline = True  # the state baseline Z that ACA's online critic starts from
        cfg.baseline_lr = 3e-4  # learning rate of the baseline Z's optimiser
        cfg.baseline_backup_entropy = False  # paper eq. 9: no entropy term in Z's target
        # floor on both log pi terms of Z's loss (eq. 8-9); None: no floor (the paper's CQL -> ACA variant: 0)
        cfg.baseline_logp_floor = ml_collections.config_dict.placeholder(float)
        return cfg

    def optimizers(self):
        opts = super().optimizers()
        if self.config.train_baseline:
            opts["baseline"] = make_optimizer(self.config, self.config.baseline_lr)
        return opts

    def init_params(self, key) -> dict:
        params = super().init_params(key)
        if self.config.train_baseline:
            params["baseline"] = baseline_net(self.config).init(
                jax.random.fold_in(key, 3), jnp.zeros((1, self.obs_dim)))
        return params

    def update(self, state: TrainState, batch: Transitions, key):
        """SAC's update (critic, actor, temperature, target), then one step on Z with the updated actor."""
        state, info = super().update(state, batch, key)
        if not self.config.train_baseline:
            return state, info
        params, opt_state, z_info = self.grad_step("baseline", baseline_loss, state.params, state.opt_state, batch,
                                                   jax.random.fold_in(key, 3))
        return state.replace(params=params, opt_state=opt_state), {**info, **z_info}
