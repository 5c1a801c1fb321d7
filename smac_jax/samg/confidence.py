"""SAMG's offline-confidence coefficient p(s, a) (docs/samg.md, "The coefficient").

After the C-VAE is trained, its deterministic encoder outputs over the whole dataset are summarised
by per-dimension normals: z_m,k ~ N(mu_m,k, sigma_m,k) and z_v,k ~ N(mu_v,k, sigma_v,k)
(:func:`fit_normals`). For a pair (s, a) with encoder outputs (z_m, z_v):

    t_m = mean_k 2 (1 - Phi(|z_m,k - mu_m,k| / sigma_m,k))      (two-sided tail probability)
    t_v = mean_k 2 (1 - Phi(|z_v,k - mu_v,k| / sigma_v,k))
    p_int(s, a) = 0.5 t_m + 0.5 t_v
    p(s, a) = p_int if p_int >= p_m else 0                        (p_m = 0.6)

This is the library's reconstruction of the paper's Eq. 4, which is missing from the copy the
library was written from (docs/samg.md says what is known and what was decided). Ablations
(``coefficient``): ``"even"``, p = ``even_p`` (0.5) everywhere; ``"random"``, p ~ U[0, 1] drawn
once per transition (a hash of the transition's (s, a) seeds the draw, so a stored transition keeps
its p, as when p is stored in the replay buffer at insert time).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from smac_jax.samg import cvae as cvae_mod

COEFFICIENTS = ("cvae", "even", "random")
#: Floor on the fitted standard deviations (a latent dimension that is constant on the data).
MIN_SIGMA = 1e-6


def fit_normals(z_m: jax.Array, z_v: jax.Array, weights: jax.Array | None = None) -> dict:
    """Per-dimension (weighted) mean and standard deviation of ``z_m`` and ``z_v`` (``(N, K)``);
    ``weights`` ``(N,)`` >= 0 (default all ones; e.g. a 0/1 mask). Returns the statistics dict
    ``{"mu_m", "sigma_m", "mu_v", "sigma_v"}``, each ``(K,)``; sigma is floored at ``MIN_SIGMA``."""
    w = jnp.ones(z_m.shape[:1], z_m.dtype) if weights is None else weights.astype(z_m.dtype)
    w = w / jnp.maximum(w.sum(), 1e-12)

    def moments(z):
        mu = jnp.einsum("n,nk->k", w, z)
        var = jnp.einsum("n,nk->k", w, (z - mu) ** 2)
        return mu, jnp.maximum(jnp.sqrt(var), MIN_SIGMA)

    mu_m, sigma_m = moments(z_m)
    mu_v, sigma_v = moments(z_v)
    return {"mu_m": mu_m, "sigma_m": sigma_m, "mu_v": mu_v, "sigma_v": sigma_v}


def default_stats(latent: int) -> dict:
    """Standard-normal statistics (the prior), used before any fit."""
    return {"mu_m": jnp.zeros(latent), "sigma_m": jnp.ones(latent),
            "mu_v": jnp.zeros(latent), "sigma_v": jnp.ones(latent)}


def tail_probability(z: jax.Array, mu: jax.Array, sigma: jax.Array) -> jax.Array:
    """mean_k 2 (1 - Phi(|z_k - mu_k| / sigma_k)) = mean_k erfc(|z_k - mu_k| / (sigma_k sqrt 2))."""
    return jnp.mean(jax.scipy.special.erfc(jnp.abs(z - mu) / (sigma * jnp.sqrt(2.0))), axis=-1)


def interior_probability(z_m: jax.Array, z_v: jax.Array, stats: dict) -> jax.Array:
    """p_int = 0.5 t_m + 0.5 t_v, in [0, 1]."""
    return 0.5 * tail_probability(z_m, stats["mu_m"], stats["sigma_m"]) + \
        0.5 * tail_probability(z_v, stats["mu_v"], stats["sigma_v"])


def thresholded(p_int: jax.Array, p_m: float) -> jax.Array:
    """p = p_int where p_int >= p_m, else exactly 0."""
    return jnp.where(p_int >= p_m, p_int, 0.0)


def fit_dataset_normals(params, obs, action, cvae_config, weights=None) -> dict:
    """:func:`fit_normals` of the encoder outputs over whole arrays (one batched encoder pass)."""
    run = jax.jit(lambda p, o, a, w: fit_normals(*cvae_mod.encode_all(p, o, a, cvae_config), w))
    return run(params, jnp.asarray(obs, jnp.float32), jnp.asarray(action, jnp.float32), weights)


def transition_uniform(obs: jax.Array, action: jax.Array, seed: int = 0) -> jax.Array:
    """A U[0, 1) number per row that depends only on the row's (s, a) bits and ``seed``: an
    FNV-1a hash of the float32 bit patterns, finished with MurmurHash3's avalanche."""
    x = jnp.concatenate([obs, action], -1).astype(jnp.float32)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    h = jnp.full(x.shape[:-1], 2166136261, jnp.uint32) ^ jnp.uint32(seed & 0xFFFFFFFF)
    for i in range(x.shape[-1]):
        h = (h ^ bits[..., i]) * jnp.uint32(16777619)
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    return (h >> 8).astype(jnp.float32) / float(1 << 24)


def coefficient(cvae_params, stats, obs, action, config) -> jax.Array:
    """p(s, a) per row for the learner ``config`` (fields ``coefficient``, ``p_threshold``,
    ``even_p``, ``random_p_seed``, ``cvae``); ``(B,)`` in [0, 1]."""
    mode = config.coefficient
    if mode == "even":
        return jnp.full(obs.shape[:-1], config.even_p, jnp.float32)
    if mode == "random":
        return transition_uniform(obs, action, config.random_p_seed)
    if mode != "cvae":
        raise ValueError(f"coefficient must be one of {COEFFICIENTS}, got {mode!r}")
    z_m, z_v = cvae_mod.encode(cvae_params, obs, action, config.cvae)
    return thresholded(interior_probability(z_m, z_v, stats), config.p_threshold)
