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


def np_log_sech2(u) -> np.ndarray:
    """sum_d log(1 - tanh(u_d)^2) = sum_d 2 (log 2 - |u_d| - log(1 + exp(-2 |u_d|))), finite for any u."""
    au = np.abs(f64(u))
    return (2.0 * (np.log(2.0) - au - np.log1p(np.exp(-2.0 * au)))).sum(-1)


def np_tanh_gaussian_logp(u, mean, log_std) -> np.ndarray:
    """log pi(tanh u | s) of a tanh-Gaussian from the pre-tanh point ``u``:
    log N(u; mean, exp(log_std)^2) - sum_d log(1 - tanh(u_d)^2)."""
    z = (f64(u) - mean) / np.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * np.log(2.0 * np.pi)).sum(-1) - np_log_sech2(u)


def np_q_action_grad(critic, obs, act) -> np.ndarray:
    """(E, B, A): d Q_e(s, a) / d a of the ReLU critic ensemble, by hand-written backpropagation."""
    layers = critic["params"]["q"]["mlp"]
    n = sum(1 for k in layers if k.startswith("dense_"))
    x = np.concatenate([f64(obs), f64(act)], -1)
    out = []
    for e in range(f64(layers["out"]["bias"]).shape[0]):
        h, masks = x, []
        for i in range(n):
            pre = h @ f64(layers[f"dense_{i}"]["kernel"])[e] + f64(layers[f"dense_{i}"]["bias"])[e]
            masks.append(pre > 0)
            h = np.maximum(pre, 0.0)
        g = np.broadcast_to(f64(layers["out"]["kernel"])[e][:, 0], h.shape)
        for i in reversed(range(n)):
            g = (g * masks[i]) @ f64(layers[f"dense_{i}"]["kernel"])[e].T
        out.append(g[:, f64(obs).shape[-1]:])
    return np.stack(out)


def np_mish(x):
    return x * np.tanh(np.logaddexp(0.0, x))


def np_eps_network(params, a, obs, w, t) -> np.ndarray:
    """The score model's EpsNetwork (smac_jax.networks.diffusion) without dropout; ``w`` and ``t``
    of shape (B,): Fourier features of t -> Dense -> mish -> Dense; Dense(concat[a, s, w, emb]);
    residual blocks x + Dense(mish(Dense(LayerNorm(x)))); Dense(mish(x))."""
    p = params
    dense = lambda q, x: x @ f64(q["kernel"]) + f64(q["bias"])  # noqa: E731
    f = 2.0 * np.pi * f64(t)[:, None] @ f64(p["fourier"]["freqs"])
    e = dense(p["time_dense_1"], np_mish(dense(p["time_dense_0"], np.concatenate([np.cos(f), np.sin(f)], -1))))
    x = dense(p["in"], np.concatenate([f64(a), f64(obs), f64(w)[:, None], e], -1))
    i = 0
    while f"block_{i}" in p:
        bp = p[f"block_{i}"]
        m = x.mean(-1, keepdims=True)
        h = (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + 1e-6)  # flax LayerNorm, epsilon 1e-6
        h = h * f64(bp["LayerNorm_0"]["scale"]) + f64(bp["LayerNorm_0"]["bias"])
        x = x + dense(bp["Dense_1"], np_mish(dense(bp["Dense_0"], h)))
        i += 1
    return dense(p["out"], np_mish(x))
