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


#: ``ensemble_layout="auto"`` applies the members one by one on a CPU up to this many members.
SEPARATE_MAX_MEMBERS = 2


def separate_members(config: Any, num: int) -> bool:
    """Whether an ensemble of ``num`` members is applied member by member (``config.ensemble_layout``:
    "separate", "batched", or "auto" = separate on a CPU backend for at most
    :data:`SEPARATE_MAX_MEMBERS` members, batched otherwise; docs/algorithms.md)."""
    layout = config.ensemble_layout
    if layout == "auto":
        return num <= SEPARATE_MAX_MEMBERS and jax.default_backend() == "cpu"
    return layout == "separate"


def critic_net(config: Any) -> QEnsemble:
    return QEnsemble(config.num_critics, tuple(config.hidden_dims), config.critic_layer_norm,
                     separate_members(config, config.num_critics))


def critic_member(config: Any, critic_params: Any, obs, action, i: int = 0):
    """Q_i(s, a) of member ``i`` of the critic ensemble, computed on its own: equal to
    ``critic_net(config).apply(critic_params, obs, action)[i]`` at the cost of one critic
    (slicing the ensemble's output would still run every member, forward and backward)."""
    member = jax.tree.map(lambda x: x[i], critic_params["params"]["q"])
    return QNetwork(tuple(config.hidden_dims), config.critic_layer_norm).apply({"params": member}, obs, action)


def value_net(config: Any, num: int = 1) -> ValueEnsemble:
    return ValueEnsemble(num, tuple(config.hidden_dims), config.critic_layer_norm, separate_members(config, num))


def gaussian_actor(config: Any, act_dim: int) -> GaussianActor:
    return GaussianActor(
        act_dim, tuple(config.hidden_dims), config.actor_layer_norm,
        config.log_std_min, config.log_std_max,
    )


def deterministic_actor(config: Any, act_dim: int) -> DeterministicActor:
    return DeterministicActor(act_dim, tuple(config.hidden_dims), config.actor_layer_norm)
