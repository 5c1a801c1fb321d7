"""Behaviour cloning by maximum likelihood: the floor every offline method should beat.

A tanh-Gaussian actor (the same network as SAC's) trained on

    L_BC(theta) = -mean_(s, a_D) log pi_theta(clip(a_D, -1 + eps, 1 - eps) | s).

Dataset actions are clipped because the tanh-Gaussian has no density on the boundary: at
|a| = 1 the pre-tanh point atanh(a) is infinite and distrax returns nan / -inf. The clip
``eps`` is ``action_clip_eps`` (default 1e-6; the clipped value is the nearest float32 below
1 - eps). The same clipping is used by SAC+ML's likelihood term (:func:`dataset_log_prob`).

BC has an actor only (parameter group ``actor``, no critic). ``act`` with ``deterministic`` is
tanh(mean). Handing BC over to a critic-based online learner (SAC, CQL, TD3, ...) copies the actor
(converted to a deterministic one for TD3) and leaves the critic, target critic and temperature at
the online learner's fresh initialisation: the generic ``Learner.transfer`` copies only groups
the source has.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners.base import Bound, Learner, TrainState, base_config, checked_loss, register
from smac_jax.learners.sac import gaussian_act
from smac_jax.types import Transitions

#: Default distance from the boundary to which dataset actions are clipped before a log-prob.
ACTION_CLIP_EPS = 1e-6


def clip_actions(action: jax.Array, eps: float = ACTION_CLIP_EPS) -> jax.Array:
    """Dataset actions clipped to [-(1 - eps), 1 - eps], where the tanh-Gaussian density is finite."""
    return jnp.clip(action, -1.0 + eps, 1.0 - eps)


def dataset_log_prob(config, actor_params, obs: jax.Array, action: jax.Array) -> jax.Array:
    """log pi(clip(a_D)|s) of dataset actions under the tanh-Gaussian actor; shape ``(B,)``."""
    act_dim = action.shape[-1]
    dist = networks.gaussian_actor(config, act_dim).apply(actor_params, obs)
    return dist.log_prob(clip_actions(action, config.action_clip_eps))


@checked_loss
def bc_loss(params, batch: Transitions, key, config):
    """-mean log pi(clip(a_D)|s) (``key`` unused; kept for the common loss signature)."""
    del key
    logp = dataset_log_prob(config, params["actor"], batch.obs, batch.action)
    loss = -logp.mean()
    return loss, {"actor_loss": loss, "bc_log_prob": logp.mean()}


@register("bc")
class BC(Learner):
    actor_kind = "gaussian"
    bounds = {"action_clip_eps": Bound(0, 1, lo_open=True, hi_open=True)}
    actor_loss_fn = staticmethod(bc_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = base_config()
        cfg.action_clip_eps = ACTION_CLIP_EPS  # dataset actions clipped to +-(1 - eps) before log pi, in (0, 1)
        cfg.transfer_log_std_init = -1.0  # log-std given to a deterministic actor handed over (as SAC's)
        return cfg

    lr_fields = {"actor": "actor_lr"}

    def init_params(self, key) -> dict:
        return {"actor": networks.gaussian_actor(self.config, self.act_dim).init(key, jnp.zeros((1, self.obs_dim)))}

    def update(self, state: TrainState, batch: Transitions, key):
        params, opt_state, info = self.grad_step("actor", self.actor_loss_fn, state.params, state.opt_state, batch, key)
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), info

    def act(self, state: TrainState, obs, key, deterministic: bool):
        return gaussian_act(self.config, self.act_dim, state.params["actor"], obs, key, deterministic)
