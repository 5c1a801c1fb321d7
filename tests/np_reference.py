"""Float64 NumPy forward passes of the library's networks, written independently of Flax, for the
loss tests: each loss is recomputed here from the same parameters and compared with the JAX value."""
from __future__ import annotations

import numpy as np


def f64(x):
    return np.asarray(x, np.float64)


def np_mlp(layers: dict, x: np.ndarray, member: int | None = None) -> np.ndarray:
    """dense_0 .. dense_{n-1} with ReLU, then ``out`` (linear) if present; ``member`` picks one
    ensemble member's (E, in, out) kernels."""
    take = (lambda a: f64(a)) if member is None else (lambda a: f64(a)[member])
    n = sum(1 for k in layers if k.startswith("dense_"))
    for i in range(n):
        x = np.maximum(x @ take(layers[f"dense_{i}"]["kernel"]) + take(layers[f"dense_{i}"]["bias"]), 0.0)
    if "out" in layers:
        x = x @ take(layers["out"]["kernel"]) + take(layers["out"]["bias"])
    return x


def np_q(critic, obs, act) -> np.ndarray:
    """(E, B) critic ensemble values; kernels (E, in, out), biases (E, out)."""
    layers = critic["params"]["q"]["mlp"]
    x = np.concatenate([f64(obs), f64(act)], -1)
    return np.stack([np_mlp(layers, x, e)[:, 0] for e in range(f64(layers["out"]["bias"]).shape[0])])


def np_v(value, obs) -> np.ndarray:
    return np_mlp(value["params"]["v"]["mlp"], f64(obs), 0)[:, 0]


def np_gaussian(actor, obs):
    """(pre-tanh mean, log-std clipped to [-20, 2]) of the Gaussian actor."""
    p = actor["params"]
    h = np_mlp(p["trunk"], f64(obs))
    mu = h @ f64(p["mean"]["kernel"]) + f64(p["mean"]["bias"])
    log_std = np.clip(h @ f64(p["log_std"]["kernel"]) + f64(p["log_std"]["bias"]), -20.0, 2.0)
    return mu, log_std


def np_det_actor(actor, obs):
    """tanh of the deterministic actor's mean head."""
    p = actor["params"]
    return np.tanh(np_mlp(p["trunk"], f64(obs)) @ f64(p["mean"]["kernel"]) + f64(p["mean"]["bias"]))


def np_episode(env, policy, seed: int, gamma: float, reward_scale: float = 1.0, reward_bias: float = 0.0):
    """One episode of ``policy`` (obs -> action) from ``env.reset(seed=seed)``: the start state and
    sum_t gamma^t (reward_scale r_t + reward_bias), in float64."""
    obs, _ = env.reset(seed=seed)
    first, total, t, done = obs, 0.0, 0, False
    while not done:
        obs, r, term, trunc, _ = env.step(np.asarray(policy(obs), np.float32))
        total += gamma**t * (reward_scale * float(r) + reward_bias)
        t, done = t + 1, term or trunc
    return first, total
