"""Network builders: each learner builds its modules from its (resolved) config."""
from __future__ import annotations

from typing import Any

import jax

from smac_jax.networks.actors import DeterministicActor, GaussianActor, TanhGaussian
from smac_jax.networks.mlp import MLP, QEnsemble, QNetwork, ValueEnsemble

__all__ = [
    "MLP", "QEnsemble", "ValueEnsemble", "GaussianActor", "DeterministicActor", "TanhGaussian",
    "critic_net", "critic_member", "value_net", "gaussian_actor", "deterministic_actor",
]


def critic_net(config: Any) -> QEnsemble:
    return QEnsemble(config.num_critics, tuple(config.hidden_dims), config.critic_layer_norm)


def critic_member(config: Any, critic_params: Any, obs, action, i: int = 0):
    """Q_i(s, a) of member ``i`` of the critic ensemble, computed on its own: equal to
    ``critic_net(config).apply(critic_params, obs, action)[i]`` at the cost of one critic
    (slicing the ensemble's output would still run every member, forward and backward)."""
    member = jax.tree.map(lambda x: x[i], critic_params["params"]["q"])
    return QNetwork(tuple(config.hidden_dims), config.critic_layer_norm).apply({"params": member}, obs, action)


def value_net(config: Any, num: int = 1) -> ValueEnsemble:
    return ValueEnsemble(num, tuple(config.hidden_dims), config.critic_layer_norm)


def gaussian_actor(config: Any, act_dim: int) -> GaussianActor:
    return GaussianActor(
        act_dim, tuple(config.hidden_dims), config.actor_layer_norm,
        config.log_std_min, config.log_std_max,
    )


def deterministic_actor(config: Any, act_dim: int) -> DeterministicActor:
    return DeterministicActor(act_dim, tuple(config.hidden_dims), config.actor_layer_norm)
