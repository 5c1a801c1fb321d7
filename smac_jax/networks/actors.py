"""Actors: a tanh-squashed diagonal Gaussian (distrax) and a deterministic tanh actor.

Both share the parameter layout ``{"trunk": ..., "mean": ...}``; the Gaussian adds ``"log_std"``.
That shared layout is what makes actor hand-over between learners a dictionary operation
(see :mod:`smac_jax.learners.transfer`).
"""
from __future__ import annotations

from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from smac_jax.networks.mlp import MLP


class TanhGaussian(distrax.Transformed):
    """tanh(N(mu, sigma)) with a ``mode`` that is tanh(mu) (distrax's would need an inverse)."""

    def __init__(self, loc: jax.Array, scale: jax.Array):
        super().__init__(distrax.MultivariateNormalDiag(loc, scale), distrax.Block(distrax.Tanh(), 1))
        self._pre_loc = loc

    def mode(self) -> jax.Array:
        return jnp.tanh(self._pre_loc)


class GaussianActor(nn.Module):
    act_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> TanhGaussian:
        h = MLP(self.hidden_dims, None, self.layer_norm, name="trunk")(obs)
        mean = nn.Dense(self.act_dim, name="mean")(h)
        log_std = nn.Dense(self.act_dim, name="log_std")(h)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return TanhGaussian(mean, jnp.exp(log_std))


class DeterministicActor(nn.Module):
    act_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = MLP(self.hidden_dims, None, self.layer_norm, name="trunk")(obs)
        return jnp.tanh(nn.Dense(self.act_dim, name="mean")(h))
