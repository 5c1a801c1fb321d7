"""SMAC's dataset score model: a return-conditioned DDPM over actions (docs/algorithms.md, SMAC).

The model is trained once per dataset, then frozen and queried by the SMAC critic loss through
:func:`score`. Everything here is a pure function of explicit inputs (parameters, data, PRNG keys
and a config); nothing is cached in module state.

Notation. ``T`` diffusion steps indexed k = 1..T; ``betas[k-1]``, ``alphas[k-1] = 1 - betas[k-1]``
and ``alpha_bars[k-1] = prod_{j<=k} alpha_j`` (arrays are 0-based, steps are 1-based). The forward
process is a_k = sqrt(abar_k) a + sigma_k eps with sigma_k = sqrt(1 - abar_k), and the network
eps_omega(a_k, k, s, w) predicts eps. Because the minimiser of the training loss is
E[eps | a_k] = -sigma_k grad log p_k(a_k | s, w) (Tweedie), the network gives the score of the
*noised* action marginal p_k, and

    score(s, a) = -eps_omega(a, k=1, s, w) / sigma_1

(``score_sign="neg_eps_over_sigma"``, the default) estimates grad_a log p_1(a | s, w) at the
action itself. ``score_sign="raw_eps"`` returns eps_omega(a, 1, s, w) unchanged, the paper's
literal formula (note the opposite sign). With the default schedule (T=5, beta_min 0.1,
beta_max 10) sigma_1 = 0.443, so p_1 is the action distribution smoothed by a fairly wide Gaussian.

Sampling runs the reverse DDPM chain (IDQL's sampler). Choice of the per-step noise (config
``sample_noise``): ``"beta"`` (default, as IDQL) uses sigma_k^2 = beta_k, ``"posterior"`` uses the
posterior variance beta_k (1 - abar_{k-1}) / (1 - abar_k). No noise is added at the last step and
actions are clipped to [-sample_clip, sample_clip] after every step. With only T = 5 coarse steps
the chain is exact for the *mean* but contracts the spread of narrow action distributions even with
a perfect network (its last step returns E[a | a_1]); for a 1-D Gaussian of std 0.15 the perfect
chain without clipping gives std 0.068 with "beta" noise and 0.042 with "posterior" noise, and
clipping the wide early iterates to [-1, 1] shrinks it a little more (~0.06 for "beta"). "beta" is
therefore the default: it is IDQL's choice and the less biased of the two here. A finer schedule
(larger ``T``) reduces the contraction, at the price of a smaller sigma_1 for :func:`score`.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from smac_jax.networks.diffusion import EpsNetwork
from smac_jax.types import Params, PRNGKey

__all__ = [
    "ScoreModelState",
    "default_score_config",
    "vp_schedule",
    "eps_network",
    "init_score_model",
    "eps_apply",
    "ddpm_loss",
    "update",
    "train_steps",
    "score",
    "ddpm_reverse_chain",
    "sample",
    "trajectory_weights",
    "save_score_model",
    "load_score_model",
]

SCORE_SIGNS = ("neg_eps_over_sigma", "raw_eps")
SAMPLE_NOISES = ("beta", "posterior")
_JSON_NAME = "score_model.json"
_STATE_DIR = "state"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Config and schedule
# --------------------------------------------------------------------------------------------


def default_score_config() -> ml_collections.ConfigDict:
    """The score model's defaults (IDQL's DDPM; docs/algorithms.md, SMAC)."""
    c = ml_collections.ConfigDict()
    # Diffusion schedule.
    c.T = 5  # number of diffusion steps k = 1..T, >= 1
    c.beta_min = 0.1  # VP schedule's noise rate beta(x) at x = 0, > 0
    c.beta_max = 10.0  # VP schedule's noise rate beta(x) at x = 1, > beta_min
    # eps-network (smac_jax.networks.diffusion.EpsNetwork).
    c.hidden_dim = 256  # width of the residual stream (each block's inner layer is 4x wider)
    c.n_blocks = 3  # number of residual blocks
    c.dropout = 0.1  # dropout rate in each block, in [0, 1); active only while training
    c.time_dim = 128  # size of the Fourier embedding of the step k (time_dim / 2 learnable frequencies)
    c.time_mlp_dim = 256  # width of the 2-layer MLP applied to the step embedding
    c.fourier_init_std = 1.0  # std of the Fourier frequencies W at init
    # Training.
    c.lr = 3e-4  # Adam learning rate
    c.ema = 0.001  # ema <- (1 - ema) * ema + ema * params, after every Adam step
    c.batch_size = 256  # (s, a, w) rows per minibatch
    c.steps = 1_000_000  # total gradient steps for a dataset model (IDQL trains 3M)
    # Queries.
    c.score_w = 1.0  # return conditioning at score-query / sampling time (1 = best trajectories)
    # "neg_eps_over_sigma": score = -eps(a, k=1, s, w) / sigma_1, an estimate of grad_a log p(a|s, w);
    # "raw_eps": eps(a, 1, s, w) itself (the paper's literal formula, opposite sign)
    c.score_sign = "neg_eps_over_sigma"
    c.sample_noise = "beta"  # reverse-chain noise variance per step: "beta" (beta_k, IDQL's) | "posterior"
    c.sample_clip = 1.0  # sampled actions clipped to [-sample_clip, sample_clip] after every reverse step, > 0
    return c


def vp_schedule(
    T: int = 5, beta_min: float = 0.1, beta_max: float = 10.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Discretised variance-preserving schedule: (betas, alphas, alpha_bars), each of shape (T,).

    alpha_t = exp(-beta_min / T - (beta_max - beta_min) (2t - 1) / (2 T^2)) for t = 1..T, i.e.
    exp(-integral of beta(s) = beta_min + s (beta_max - beta_min) over [(t-1)/T, t/T]);
    betas = 1 - alphas; alpha_bars = cumprod(alphas). Computed in float64, returned as float32.
    """
    t = np.arange(1, T + 1, dtype=np.float64)
    alphas = np.exp(-beta_min / T - 0.5 * (beta_max - beta_min) * (2.0 * t - 1.0) / T**2)
    betas = 1.0 - alphas
    alpha_bars = np.cumprod(alphas)
    return (
        jnp.asarray(betas, jnp.float32),
        jnp.asarray(alphas, jnp.float32),
        jnp.asarray(alpha_bars, jnp.float32),
    )


def _schedule(config: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    return vp_schedule(int(config.T), float(config.beta_min), float(config.beta_max))


# --------------------------------------------------------------------------------------------
# Network and state
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class ScoreModelState:
    """Trainable parameters, their EMA (what is used for queries), Adam state and step count."""

    params: Params
    ema_params: Params
    opt_state: optax.OptState
    step: jax.Array


def eps_network(config: Any, act_dim: int) -> EpsNetwork:
    """The eps-network described by ``config`` for actions of size ``act_dim``."""
    return EpsNetwork(
        act_dim=int(act_dim),
        hidden_dim=int(config.hidden_dim),
        n_blocks=int(config.n_blocks),
        dropout_rate=float(config.dropout),
        time_dim=int(config.time_dim),
        time_mlp_dim=int(config.time_mlp_dim),
        fourier_init_std=float(config.fourier_init_std),
    )


def _optimizer(config: Any) -> optax.GradientTransformation:
    return optax.adam(float(config.lr))


def _act_dim(params: Params) -> int:
    """The action size, read from the output layer of an ``EpsNetwork`` parameter tree."""
    return int(params["out"]["bias"].shape[-1])


def init_score_model(key: PRNGKey, obs_dim: int, act_dim: int, config: Any) -> ScoreModelState:
    """Fresh parameters (EMA starts equal to them), Adam state and step 0."""
    net = eps_network(config, act_dim)
    params = net.init(
        key,
        jnp.zeros((1, act_dim), jnp.float32),
        jnp.zeros((1, obs_dim), jnp.float32),
        jnp.zeros((1,), jnp.float32),
        jnp.ones((1,), jnp.float32),
        train=False,
    )["params"]
    return ScoreModelState(
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=_optimizer(config).init(params),
        step=jnp.zeros((), jnp.int32),
    )


def eps_apply(
    params: Params,
    a_k: jax.Array,
    obs: jax.Array,
    w: jax.Array,
    k: jax.Array,
    config: Any,
    dropout_key: PRNGKey | None = None,
) -> jax.Array:
    """eps_omega(a_k, k, s, w) for integer steps ``k`` in 1..T (broadcast over the batch).

    Dropout is active exactly when ``dropout_key`` is given.
    """
    net = eps_network(config, a_k.shape[-1])
    t = jnp.asarray(k, jnp.float32) / float(config.T)
    train = dropout_key is not None
    rngs = {"dropout": dropout_key} if train else None
    return net.apply({"params": params}, a_k, obs, w, t, train=train, rngs=rngs)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def ddpm_loss(
    params: Params,
    batch_obs: jax.Array,
    batch_action: jax.Array,
    batch_w: jax.Array,
    key: PRNGKey,
    config: Any,
) -> jax.Array:
    """mean_batch || eps - eps_omega(sqrt(abar_k) a + sqrt(1 - abar_k) eps, k, s, w) ||^2.

    k ~ Uniform{1..T} and eps ~ N(0, I) per sample, dropout active; all randomness from ``key``.
    """
    _, _, alpha_bars = _schedule(config)
    batch = batch_action.shape[0]
    k_key, eps_key, dropout_key = jax.random.split(key, 3)
    k = jax.random.randint(k_key, (batch,), 1, int(config.T) + 1)
    eps = jax.random.normal(eps_key, batch_action.shape, batch_action.dtype)
    abar = alpha_bars[k - 1][:, None]
    a_k = jnp.sqrt(abar) * batch_action + jnp.sqrt(1.0 - abar) * eps
    eps_hat = eps_apply(params, a_k, batch_obs, batch_w, k, config, dropout_key)
    return jnp.mean(jnp.sum(jnp.square(eps - eps_hat), axis=-1))


def update(
    state: ScoreModelState,
    obs: jax.Array,
    action: jax.Array,
    w: jax.Array,
    key: PRNGKey,
    config: Any,
) -> tuple[ScoreModelState, dict[str, jax.Array]]:
    """One Adam step on ``ddpm_loss(params, obs, action, w, key, config)``, then the EMA update
    ema <- (1 - config.ema) * ema + config.ema * new_params. Pure; jit it with ``config`` closed
    over (e.g. ``jax.jit(functools.partial(update, config=config))``).
    """
    loss, grads = jax.value_and_grad(ddpm_loss)(state.params, obs, action, w, key, config)
    updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    rate = float(config.ema)
    ema_params = jax.tree.map(lambda e, p: (1.0 - rate) * e + rate * p, state.ema_params, params)
    new_state = state.replace(
        params=params, ema_params=ema_params, opt_state=opt_state, step=state.step + 1
    )
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    return new_state, {"loss": loss, "grad_norm": grad_norm}


def _frozen(config: Any) -> ml_collections.FrozenConfigDict:
    if isinstance(config, ml_collections.FrozenConfigDict):
        return config
    return ml_collections.FrozenConfigDict(config)


@functools.partial(jax.jit, static_argnames=("n_steps", "config"))
def _train_steps_jit(state, data_obs, data_action, data_w, key, n_steps, config):
    n_data = data_action.shape[0]
    batch_size = int(config.batch_size)

    def body(state, step_key):
        idx_key, loss_key = jax.random.split(step_key)
        idx = jax.random.randint(idx_key, (batch_size,), 0, n_data)
        return update(state, data_obs[idx], data_action[idx], data_w[idx], loss_key, config)

    return jax.lax.scan(body, state, jax.random.split(key, n_steps))


def train_steps(
    state: ScoreModelState,
    data_obs: jax.Array,
    data_action: jax.Array,
    data_w: jax.Array,
    key: PRNGKey,
    n_steps: int,
    config: Any,
) -> tuple[ScoreModelState, dict[str, jax.Array]]:
    """``n_steps`` calls of :func:`update` on uniform minibatches (``config.batch_size`` rows,
    with replacement) of the device-resident dataset, fused into one ``jax.lax.scan``.

    Returns the new state and per-step metrics (each of shape (n_steps,)). Compiled once per
    (n_steps, config, array shapes): the config is frozen and used as a static argument.
    """
    return _train_steps_jit(
        state, data_obs, data_action, data_w, key, n_steps=int(n_steps), config=_frozen(config)
    )


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


def _query_w(w: jax.Array | float | None, batch_shape: tuple[int, ...], config: Any) -> jax.Array:
    if w is None:
        w = float(config.score_w)
    w = jnp.asarray(w, jnp.float32)
    if w.ndim == len(batch_shape) + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    return jnp.broadcast_to(w, batch_shape)


def score(
    params: Params,
    obs: jax.Array,
    action: jax.Array,
    w: jax.Array | float | None,
    config: Any,
) -> jax.Array:
    """The dataset score at the action itself, using the smallest noise level k = 1.

    ``"neg_eps_over_sigma"``: -eps_omega(a, 1, s, w) / sqrt(1 - abar_1), an estimate of
    grad_a log p_1(a | s, w); ``"raw_eps"``: eps_omega(a, 1, s, w). Deterministic (dropout off).
    ``obs`` (B, obs_dim), ``action`` (B, act_dim), ``w`` scalar / (B,) / None (= config.score_w).
    Pass the EMA parameters (``state.ema_params``).
    """
    batch_shape = action.shape[:-1]
    w = _query_w(w, batch_shape, config)
    eps = eps_apply(params, action, obs, w, jnp.ones(batch_shape, jnp.int32), config)
    sign = config.score_sign
    if sign == "neg_eps_over_sigma":
        _, _, alpha_bars = _schedule(config)
        return -eps / jnp.sqrt(1.0 - alpha_bars[0])
    if sign == "raw_eps":
        return eps
    raise ValueError(f"score_sign must be one of {SCORE_SIGNS}, got {sign!r}")


def gaussian_eps(mean, cov, T: int = 5, beta_min: float = 0.1, beta_max: float = 10.0):
    """The exact noise prediction for Gaussian data N(mean, cov), a reference for checking a fitted
    eps-network or the sampler: ``eps_fn(x, k) = sqrt(1 - abar_k) Sigma_k^{-1} (x - sqrt(abar_k) mean)``
    with ``Sigma_k = abar_k cov + (1 - abar_k) I`` (the noised marginal's covariance), i.e.
    ``-sqrt(1 - abar_k)`` times that marginal's score. ``mean``: (act_dim,) or one row per ``x``
    row; ``k`` in 1..T; the schedule is :func:`vp_schedule`'s."""
    _, _, abars = vp_schedule(T, beta_min, beta_max)
    cov, mean = jnp.asarray(cov, jnp.float32), jnp.asarray(mean, jnp.float32)

    def eps_fn(x, k):
        abar = abars[k - 1]
        sigma_k = abar * cov + (1.0 - abar) * jnp.eye(cov.shape[0])
        return jnp.sqrt(1.0 - abar) * jnp.linalg.solve(sigma_k, (x - jnp.sqrt(abar) * mean).T).T

    return eps_fn


def ddpm_reverse_chain(
    eps_fn: Callable[[jax.Array, jax.Array], jax.Array],
    x_T: jax.Array,
    key: PRNGKey,
    config: Any,
) -> jax.Array:
    """The reverse DDPM chain from k = T down to 1 as a ``jax.lax.scan``.

    ``eps_fn(x_k, k)`` predicts the noise at integer step ``k`` (an int32 scalar). Each step:
    x_{k-1} = (x_k - beta_k / sqrt(1 - abar_k) eps_fn(x_k, k)) / sqrt(alpha_k) + sigma_k z
    (posterior mean under eps-prediction; sigma_k per ``config.sample_noise``; no noise at k = 1),
    then clipped to [-config.sample_clip, config.sample_clip]. Exposed so that the chain can be run
    with an analytic eps (tests) as well as with the network (:func:`sample`).
    """
    betas, alphas, alpha_bars = _schedule(config)
    if config.sample_noise == "beta":
        variances = betas
    elif config.sample_noise == "posterior":
        abar_prev = jnp.concatenate([jnp.ones((1,), alpha_bars.dtype), alpha_bars[:-1]])
        variances = betas * (1.0 - abar_prev) / (1.0 - alpha_bars)
    else:
        raise ValueError(f"sample_noise must be one of {SAMPLE_NOISES}, got {config.sample_noise!r}")
    clip = float(config.sample_clip)
    T = int(config.T)

    def body(x, inputs):
        k, step_key = inputs
        i = k - 1
        eps = eps_fn(x, k)
        x = (x - betas[i] / jnp.sqrt(1.0 - alpha_bars[i]) * eps) / jnp.sqrt(alphas[i])
        z = jax.random.normal(step_key, x.shape, x.dtype)
        x = x + jnp.where(k > 1, jnp.sqrt(variances[i]), 0.0) * z
        return jnp.clip(x, -clip, clip), None

    ks = jnp.arange(T, 0, -1, dtype=jnp.int32)
    x, _ = jax.lax.scan(body, x_T, (ks, jax.random.split(key, T)))
    return x


def sample(
    params: Params,
    obs: jax.Array,
    w: jax.Array | float | None,
    key: PRNGKey,
    config: Any,
) -> jax.Array:
    """One action per row of ``obs`` (B, obs_dim) from the reverse DDPM chain, in [-1, 1]
    (for the default ``sample_clip``). ``w``: scalar / (B,) / None (= config.score_w).
    Deterministic network (dropout off); pass the EMA parameters.
    """
    batch_shape = obs.shape[:-1]
    w = _query_w(w, batch_shape, config)
    init_key, chain_key = jax.random.split(key)
    x_T = jax.random.normal(init_key, batch_shape + (_act_dim(params),), jnp.float32)

    def eps_fn(x: jax.Array, k: jax.Array) -> jax.Array:
        return eps_apply(params, x, obs, w, jnp.broadcast_to(k, batch_shape), config)

    return ddpm_reverse_chain(eps_fn, x_T, chain_key, config)


def trajectory_weights(traj_return: jax.Array) -> jax.Array:
    """RvS conditioning w: each transition's trajectory return min-max normalised to [0, 1].

    ``traj_return`` is per transition (``Transitions.traj_return``); every episode contributes at
    least one row, so the min and max over rows are the min and max over the dataset's episodes.
    A dataset whose episodes all have the same return gets w = 1 everywhere.
    """
    r = jnp.asarray(traj_return, jnp.float32)
    lo, hi = jnp.min(r), jnp.max(r)
    span = hi - lo
    safe = jnp.where(span > 0, span, 1.0)
    return jnp.where(span > 0, (r - lo) / safe, jnp.ones_like(r))


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------


def save_score_model(
    path: str | os.PathLike,
    state: ScoreModelState,
    config: Any,
    meta: dict[str, Any],
    *,
    overwrite: bool = False,
) -> None:
    """Write ``path/state`` (orbax checkpoint of the full state) and ``path/score_model.json``.

    ``meta`` must hold ``obs_dim`` and ``act_dim`` (used to rebuild the restore template) and may
    hold anything JSON-serialisable, e.g. the dataset id and the observation normalisation.
    """
    for field in ("obs_dim", "act_dim"):
        if field not in meta:
            raise ValueError(f"meta must contain {field!r}")
    if int(meta["act_dim"]) != _act_dim(state.params):
        raise ValueError(f"meta act_dim={meta['act_dim']} but the network outputs {_act_dim(state.params)}")
    path = os.path.abspath(os.fspath(path))
    json_path = os.path.join(path, _JSON_NAME)
    if os.path.exists(json_path) and not overwrite:
        raise FileExistsError(f"{json_path} exists (pass overwrite=True)")
    os.makedirs(path, exist_ok=True)
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, _STATE_DIR), state, force=overwrite)
        ckptr.wait_until_finished()
    with open(json_path, "w") as f:
        json.dump({"format_version": _FORMAT_VERSION, "config": cfg, "meta": meta}, f, indent=2)


def load_score_model(
    path: str | os.PathLike,
) -> tuple[ScoreModelState, ml_collections.ConfigDict, dict[str, Any]]:
    """Inverse of :func:`save_score_model`: ``(state, config, meta)``.

    The restore template is rebuilt (shapes only, via ``jax.eval_shape``) from the saved config and
    ``meta["obs_dim"]``, ``meta["act_dim"]``, so no live state is needed.
    """
    path = os.path.abspath(os.fspath(path))
    with open(os.path.join(path, _JSON_NAME)) as f:
        saved = json.load(f)
    config = ml_collections.ConfigDict(saved["config"])
    meta = saved["meta"]
    template = jax.eval_shape(
        lambda: init_score_model(
            jax.random.PRNGKey(0), int(meta["obs_dim"]), int(meta["act_dim"]), config
        )
    )
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(os.path.join(path, _STATE_DIR), template)
    return state, config, meta
