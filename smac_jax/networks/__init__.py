"""Network builders: each learner builds its modules from its (resolved) config."""
from __future__ import annotations

from typing import Any

from smac_jax.networks.actors import DeterministicActor, GaussianActor, TanhGaussian
from smac_jax.networks.mlp import MLP, QEnsemble, ValueEnsemble

__all__ = [
    "MLP", "QEnsemble", "ValueEnsemble", "GaussianActor", "DeterministicActor", "TanhGaussian",
    "critic_net", "value_net", "gaussian_actor", "deterministic_actor",
]


def critic_net(config: Any) -> QEnsemble:
    return QEnsemble(config.num_critics, tuple(config.hidden_dims), config.get("critic_layer_norm", False))


def value_net(config: Any, num: int = 1) -> ValueEnsemble:
    return ValueEnsemble(num, tuple(config.hidden_dims), config.get("critic_layer_norm", False))


def gaussian_actor(config: Any, act_dim: int) -> GaussianActor:
    return GaussianActor(
        act_dim, tuple(config.hidden_dims), config.get("actor_layer_norm", False),
        config.get("log_std_min", -20.0), config.get("log_std_max", 2.0),
    )


def deterministic_actor(config: Any, act_dim: int) -> DeterministicActor:
    return DeterministicActor(act_dim, tuple(config.hidden_dims), config.get("actor_layer_norm", False))
