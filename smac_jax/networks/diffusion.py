"""The noise-prediction network of SMAC's dataset score model (IDQL's architecture; docs/algorithms.md, SMAC).

``EpsNetwork`` computes eps_omega(a_k, k, s, w): the noise that was added to a clean action to
produce the noised action ``a_k`` at diffusion step k, given the state ``s`` and the return
conditioning ``w``. Layout (defaults in brackets, every size is a module field)::

    t = k / T                                     (normalised step in (0, 1])
    e = FourierFeatures(time_dim [128])(t)        (learnable frequencies, cos / sin)
    e = Dense(time_mlp_dim [256]) -> mish -> Dense(time_mlp_dim [256])
    x = concat[a_k, s, w, e]
    x = Dense(hidden_dim [256])
    n_blocks [3] x  ResidualBlock:  x + Dense(hidden) o mish o Dense(4 hidden) o LayerNorm o Dropout [0.1]
    x = mish(x)
    eps = Dense(act_dim)(x)

The time MLP ends linearly (no activation after its last layer), as in IDQL's condition encoder.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["FourierFeatures", "ResidualBlock", "EpsNetwork", "mish"]


def mish(x: jax.Array) -> jax.Array:
    """mish(x) = x * tanh(softplus(x))."""
    return jax.nn.mish(x)


class FourierFeatures(nn.Module):
    """Learnable Fourier features of a scalar input: [cos(2 pi W t), sin(2 pi W t)].

    ``W`` is a (in_dim, dim // 2) matrix (a bias-free Dense layer) initialised from
    N(0, init_std^2). The parameter is deliberately named ``freqs`` rather than ``kernel`` so
    that optimisers that treat ``kernel`` leaves specially (Muon, see ``smac_jax.optim``) leave it
    to Adam.
    """

    dim: int = 128
    init_std: float = 1.0

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        if self.dim % 2:
            raise ValueError(f"FourierFeatures.dim must be even, got {self.dim}")
        freqs = self.param(
            "freqs", nn.initializers.normal(self.init_std), (t.shape[-1], self.dim // 2), jnp.float32
        )
        f = 2.0 * math.pi * t @ freqs
        return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


class ResidualBlock(nn.Module):
    """x + Dense(hidden)(mish(Dense(expansion * hidden)(LayerNorm(Dropout(x)))))."""

    hidden_dim: int = 256
    expansion: int = 4
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x
        if self.dropout_rate > 0.0:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.LayerNorm()(x)
        x = nn.Dense(self.expansion * self.hidden_dim)(x)
        x = mish(x)
        x = nn.Dense(self.hidden_dim)(x)
        if residual.shape[-1] != self.hidden_dim:  # never happens inside EpsNetwork; kept general
            residual = nn.Dense(self.hidden_dim, name="skip")(residual)
        return residual + x


class EpsNetwork(nn.Module):
    """eps_omega(a_k, t, s, w) with t = k / T.

    Call as ``net.apply({"params": p}, a_k, obs, w, t, train=..., rngs={"dropout": key})``.
    ``a_k``: (..., act_dim); ``obs``: (..., obs_dim); ``w`` and ``t``: shape (...,) or (..., 1),
    broadcast against the batch shape of ``a_k``. Dropout is active only when ``train`` is True
    (and then needs a ``"dropout"`` rng). Returns (..., act_dim).
    """

    act_dim: int
    hidden_dim: int = 256
    n_blocks: int = 3
    dropout_rate: float = 0.1
    time_dim: int = 128
    time_mlp_dim: int = 256
    fourier_init_std: float = 1.0

    @nn.compact
    def __call__(
        self, a_k: jax.Array, obs: jax.Array, w: jax.Array, t: jax.Array, train: bool = False
    ) -> jax.Array:
        batch_shape = a_k.shape[:-1]

        def as_column(x: jax.Array) -> jax.Array:
            x = jnp.asarray(x, jnp.float32)
            if x.ndim == len(batch_shape) + 1 and x.shape[-1] == 1:
                x = x[..., 0]
            return jnp.broadcast_to(x, batch_shape)[..., None]

        t_emb = FourierFeatures(self.time_dim, self.fourier_init_std, name="fourier")(as_column(t))
        t_emb = nn.Dense(self.time_mlp_dim, name="time_dense_0")(t_emb)
        t_emb = mish(t_emb)
        t_emb = nn.Dense(self.time_mlp_dim, name="time_dense_1")(t_emb)

        obs = jnp.broadcast_to(jnp.asarray(obs, jnp.float32), batch_shape + obs.shape[-1:])
        x = jnp.concatenate([a_k, obs, as_column(w), t_emb], axis=-1)
        x = nn.Dense(self.hidden_dim, name="in")(x)
        for i in range(self.n_blocks):
            x = ResidualBlock(self.hidden_dim, 4, self.dropout_rate, name=f"block_{i}")(x, train)
        x = mish(x)
        return nn.Dense(self.act_dim, name="out")(x)
