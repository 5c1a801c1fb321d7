"""TD3+BC (Fujimoto & Gu, 2021): TD3 with a behaviour-cloning term in the actor loss (docs/algorithms.md, "TD3+BC").

Actor loss: -lambda mean_s Q_1(s, pi(s)) + w mean_{s, j} (pi(s)_j - a_j)^2, with
lambda = alpha / mean_s |Q_1(s, pi(s))| (detached), alpha = 2.5, and the BC weight w = 1 unless
``bc_decay`` is set. Critic, target policy smoothing, policy delay and Polyak targets are TD3's
(:class:`smac_jax.learners.td3.TD3` ``update``, unchanged).

Online the BC term is kept (the SMAC paper fine-tunes with TD3+BC as it is). ``bc_decay`` optionally
decays w over update steps t = ``state.step``, which counts this learner's gradient steps and
restarts at 0 at the offline-to-online hand-over (so online it counts online gradient steps:
``utd`` per environment step):

* ``"none"`` (default): w = 1;
* ``"multiplicative"``: w = max(bc_decay_rate ** t, bc_final_weight);
* ``"linear"``: w = 1 + (bc_final_weight - 1) min(t / bc_decay_steps, 1).

Used offline, a decay would also apply to the offline steps; leave it at "none" there.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners.base import ConfigError, ProtocolError, TrainState, at_least, checked_loss, register, sg
from smac_jax.learners.td3 import TD3
from smac_jax.types import Transitions

BC_DECAYS = ("none", "multiplicative", "linear")


def bc_weight(step: jax.Array, config) -> jax.Array:
    """The BC weight w after ``step`` update steps (see the module docstring)."""
    t = jnp.asarray(step, jnp.float32)
    final = config.bc_final_weight
    if config.bc_decay == "multiplicative":
        # exp(t log rate) with the log taken in float64: rate ** t with the rate rounded to float32 first
        # (0.9999 -> 0.99989998) is off by t x 1.7e-8 relative (0.2% at t = 100k)
        return jnp.maximum(jnp.exp(t * jnp.float32(math.log(config.bc_decay_rate))), final)
    if config.bc_decay == "linear":
        return 1.0 + (final - 1.0) * jnp.minimum(t / config.bc_decay_steps, 1.0)
    return jnp.ones((), jnp.float32)


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """-lambda mean Q_1(s, pi(s)) + w mean (pi(s) - a)^2, lambda = alpha / mean|Q_1(s, pi(s))|
    detached; w = ``params["bc_weight"]`` when present (set by :class:`TD3BC` each step), else 1."""
    act_dim = batch.action.shape[-1]
    pi = networks.deterministic_actor(config, act_dim).apply(params["actor"], batch.obs)
    q = networks.critic_member(config, params["critic"], batch.obs, pi, 0)
    lam = sg(config.alpha / jnp.abs(q).mean())
    bc = ((pi - batch.action) ** 2).mean()
    w = params.get("bc_weight", 1.0)
    loss = -lam * q.mean() + w * bc
    return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lam, "bc_weight": jnp.asarray(w, jnp.float32)}


@register("td3bc")
class TD3BC(TD3):
    bounds = {"alpha": at_least(0), "bc_final_weight": at_least(0)}
    actor_loss_fn = staticmethod(actor_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = super().default_config()
        cfg.alpha = 2.5  # weight of the Q term, lambda = alpha / mean |Q_1(s, pi(s))|; >= 0
        cfg.bc_decay = "none"  # schedule of the BC weight w: "none" (w = 1) | "multiplicative" | "linear"
        cfg.bc_decay_rate = 0.9999  # multiplicative: w = rate ** step
        cfg.bc_decay_steps = 100_000  # linear: steps from 1 to bc_final_weight
        cfg.bc_final_weight = 0.0  # floor (multiplicative) / end value (linear)
        return cfg

    def __init__(self, config, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        if config.bc_decay not in BC_DECAYS:
            raise ConfigError(f"{self.name}: bc_decay must be one of {BC_DECAYS}, got {config.bc_decay!r} (a schedule "
                              "of one's own: override bc_weight_at in a subclass)")
        if config.bc_decay == "multiplicative" and not 0.0 < config.bc_decay_rate <= 1.0:
            raise ConfigError(f"{self.name}: bc_decay_rate must lie in (0, 1], got {config.bc_decay_rate}")
        if config.bc_decay == "linear" and config.bc_decay_steps <= 0:
            raise ConfigError(f"{self.name}: bc_decay_steps must be > 0, got {config.bc_decay_steps}")

    def update(self, state: TrainState, batch: Transitions, key):
        """TD3's update, with this step's BC weight passed to the actor loss as a (non-trained)
        ``bc_weight`` entry of the params dict, removed again from the returned state."""
        return self._weighted(super().update, state, batch, key)

    def update_phase(self, state: TrainState, batch: Transitions, key, phase: int):
        return self._weighted(super().update_phase, state, batch, key, phase)

    def bc_weight_at(self, step: jax.Array) -> jax.Array | None:
        """The BC weight w of the update at ``step`` (a traced int), or None for the constant 1 (no
        schedule): ``bc_decay``'s schedule. A subclass overrides this for a schedule of its own;
        the offline and online loops both go through it."""
        if self.config.bc_decay == "none":
            return None
        return bc_weight(step, self.config)

    def _weighted(self, update, state: TrainState, *args):
        w = self.bc_weight_at(state.step)
        if w is None:
            return update(state, *args)
        state, info = update(state.replace(params={**state.params, "bc_weight": w}), *args)
        if "actor_loss" in info and "bc_weight" not in info:  # an actor loss of one's own ignoring the schedule
            raise ProtocolError(f"learner {self.name!r}: bc_decay={self.config.bc_decay!r} schedules the BC weight, but "
                                "its actor loss reports no 'bc_weight' metric: read the weight as "
                                "params.get('bc_weight', 1.0) and return it in the info dict (as td3bc.actor_loss does)")
        params = {k: v for k, v in state.params.items() if k != "bc_weight"}
        return state.replace(params=params), info
