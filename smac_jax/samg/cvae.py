"""SAMG's state-action-conditional C-VAE over (s, a) -> s' (docs/samg.md, "The C-VAE").

* Encoder q(z | s, a): an MLP (``hidden_dims``, default 750 x 750, ReLU) on [s, a] with two linear
  heads, the posterior mean ``z_m`` and log-std ``z_v`` (clipped to [``log_std_min``,
  ``log_std_max``] = [-4, 15], BCQ's VAE), latent dimension ``latent_dim`` (default 2 |A|).
* Decoder p(s' | z, s): an MLP on [z, s] with a linear output of |S| units, the mean of a
  fixed-variance Gaussian, so the reconstruction term is a squared error. This is the simplified
  decoder the paper uses on Hopper and Walker2d against posterior collapse: the action reaches s'
  only through z. ``decoder_action=True`` gives Eq. 2's literal decoder p(s' | z, s, a), on [z, s, a],
  whose latent carries nothing the decoder lacks and collapses on deterministic simulators.
* Loss (the negative ELBO of the SAMG paper's Eq. 2, in the BCQ / CPQ convention of per-element
  means):  mean_{b,d} (Dec(z, s[, a]) - s')^2 + w_t * mean_{b,k} KL(N(z_m, e^{z_v}) || N(0, 1)),
  z = z_m + e^{z_v} eps. The KL weight w_t rises linearly from 0 to ``beta_kl`` (0.05) over the
  first ``anneal_frac`` (half) of the training steps and stays there (KL annealing).
* Inputs are NOT standardised by the C-VAE: it sees exactly the observations the learner sees
  (the paper reports posterior collapse with standardised inputs).

Training is jitted and scan-fused (``chunk`` updates per dispatch) with a progress bar;
:func:`fit_cvae` returns the parameters, the fitting time and the KL term on the whole dataset.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from smac_jax.networks.mlp import MLP
from smac_jax.runtime import progress_bar

#: Rows per encoder call when a whole dataset is encoded (:func:`encode_all`).
ENCODE_CHUNK = 4096


def default_cvae_config() -> ml_collections.ConfigDict:
    """The C-VAE's hyperparameters (docs/samg.md lists the decisions behind each)."""
    return ml_collections.ConfigDict(dict(
        hidden_dims=(750, 750),  # hidden-layer widths of the encoder and the decoder MLPs (ReLU)
        latent_dim=0,  # dimension of the latent z; 0 = 2 |A| (the SAMG default)
        # False: decoder p(s' | z, s), the simplified decoder the paper uses against posterior
        # collapse; True: Eq. 2's p(s' | z, s, a), whose latent collapses on deterministic
        # simulators (docs/samg.md, 'Posterior collapse')
        decoder_action=False,
        log_std_min=-4.0,  # lower clip of the encoder's log-std z_v (BCQ's VAE)
        log_std_max=15.0,  # upper clip of the encoder's log-std z_v (BCQ's VAE)
        beta_kl=0.05,  # final KL weight (0.5 collapses the latent on MuJoCo data; docs/samg.md)
        anneal_frac=0.5,  # the KL weight rises 0 -> beta_kl over this fraction of the steps
        steps=50_000,  # Adam steps of the offline fit: a one-off per dataset, saved and reused (docs/samg.md)
        batch_size=256,  # (s, a, s') rows per C-VAE minibatch (offline fit and adaptive updates)
        lr=1e-3,  # Adam learning rate of the C-VAE (offline fit and adaptive updates)
        seed=0,  # seed of the C-VAE's initialisation, minibatches and reference rows (docs/samg.md)
        chunk=1_000,  # updates fused in one dispatch (and one progress-bar tick)
    ))


def latent_dim(config, act_dim: int) -> int:
    return int(config.latent_dim) or 2 * act_dim


class Encoder(nn.Module):
    """q(z | s, a) -> (z_m, z_v), z_v the log-std."""

    latent_dim: int
    hidden_dims: Sequence[int] = (750, 750)
    log_std_min: float = -4.0
    log_std_max: float = 15.0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(tuple(self.hidden_dims), name="trunk")(jnp.concatenate([obs, action], -1))
        z_m = nn.Dense(self.latent_dim, name="mean")(h)
        z_v = jnp.clip(nn.Dense(self.latent_dim, name="log_std")(h), self.log_std_min, self.log_std_max)
        return z_m, z_v


class CVAE(nn.Module):
    """Encoder q(z | s, a) and decoder p(s' | z, s) (or p(s' | z, s, a) with ``decoder_action``);
    ``__call__`` returns (s'_hat, z_m, z_v)."""

    obs_dim: int
    latent_dim: int
    hidden_dims: Sequence[int] = (750, 750)
    log_std_min: float = -4.0
    log_std_max: float = 15.0
    decoder_action: bool = False

    def setup(self):
        self.encoder = Encoder(self.latent_dim, self.hidden_dims, self.log_std_min, self.log_std_max)
        self.decoder = MLP(tuple(self.hidden_dims), self.obs_dim)

    def encode(self, obs, action):
        return self.encoder(obs, action)

    def decode(self, z, obs, action):
        x = [z, obs, action] if self.decoder_action else [z, obs]
        return self.decoder(jnp.concatenate(x, -1))

    def __call__(self, obs, action, eps):
        z_m, z_v = self.encode(obs, action)
        return self.decode(z_m + jnp.exp(z_v) * eps, obs, action), z_m, z_v


def cvae_net(config, obs_dim: int, act_dim: int) -> CVAE:
    return CVAE(obs_dim, latent_dim(config, act_dim), tuple(config.hidden_dims),
                float(config.log_std_min), float(config.log_std_max), bool(config.decoder_action))


def init_cvae(key, obs_dim: int, act_dim: int, config) -> Any:
    net = cvae_net(config, obs_dim, act_dim)
    z = jnp.zeros((1, net.latent_dim))
    return net.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), z)


def encode(params, obs, action, config) -> tuple[jax.Array, jax.Array]:
    """(z_m, z_v) of q(z | s, a) for a batch."""
    net = cvae_net(config, obs.shape[-1], action.shape[-1])
    return net.apply(params, obs, action, method=CVAE.encode)


def encode_all(params, obs, action, config, chunk: int = ENCODE_CHUNK) -> tuple[jax.Array, jax.Array]:
    """:func:`encode` over any number of rows in fixed-size chunks (``jax.lax.map``; jittable,
    vmappable). Returns ``(N, latent)`` arrays."""
    n = obs.shape[0]
    c = min(chunk, max(n, 1))
    pad = (-n) % c
    o = jnp.concatenate([obs, jnp.zeros((pad, obs.shape[-1]), obs.dtype)]).reshape(-1, c, obs.shape[-1])
    a = jnp.concatenate([action, jnp.zeros((pad, action.shape[-1]), action.dtype)]).reshape(-1, c, action.shape[-1])
    z_m, z_v = jax.lax.map(lambda xs: encode(params, xs[0], xs[1], config), (o, a))
    return z_m.reshape(-1, z_m.shape[-1])[:n], z_v.reshape(-1, z_v.shape[-1])[:n]


def gaussian_kl(z_m: jax.Array, z_v: jax.Array) -> jax.Array:
    """KL(N(z_m, e^{2 z_v}) || N(0, 1)) per latent dimension: 0.5 (e^{2 z_v} + z_m^2 - 1) - z_v."""
    return 0.5 * (jnp.exp(2.0 * z_v) + z_m**2 - 1.0) - z_v


def elbo_loss(params, obs, action, next_obs, eps, kl_weight, config):
    """mean (s'_hat - s')^2 + kl_weight * mean KL (module docstring); ``eps`` the latent noise."""
    net = cvae_net(config, obs.shape[-1], action.shape[-1])
    recon, z_m, z_v = net.apply(params, obs, action, eps)
    rec = jnp.mean((recon - next_obs) ** 2)
    kl = jnp.mean(gaussian_kl(z_m, z_v))
    return rec + kl_weight * kl, {"cvae_loss": rec + kl_weight * kl, "cvae_recon": rec, "cvae_kl": kl,
                                  "cvae_kl_weight": jnp.asarray(kl_weight, jnp.float32)}


def kl_weight(step, anneal_steps: float, beta_kl: float):
    """beta_kl * min(1, step / anneal_steps) (beta_kl from the start when ``anneal_steps`` <= 0)."""
    if anneal_steps <= 0:
        return jnp.asarray(beta_kl, jnp.float32)
    return beta_kl * jnp.minimum(1.0, step / anneal_steps)


def optimizer(config) -> optax.GradientTransformation:
    return optax.adam(config.lr)


def sgd_steps(params, opt_state, data: tuple, n_rows, key, n_steps: int, step0, anneal_steps: float, config):
    """``n_steps`` Adam steps on minibatches drawn uniformly from the first ``n_rows`` rows of
    ``data = (obs, action, next_obs)`` (``n_rows`` may be traced); the KL weight of global step
    ``step0 + i`` follows :func:`kl_weight`. Pure, jittable and vmappable. Returns
    ``(params, opt_state, metrics averaged over the steps)``."""
    obs, action, next_obs = data
    opt = optimizer(config)
    act_dim = action.shape[-1]
    lat = latent_dim(config, act_dim)

    def body(carry, i):
        p, o = carry
        k_idx, k_eps = jax.random.split(jax.random.fold_in(key, i))
        idx = jax.random.randint(k_idx, (config.batch_size,), 0, jnp.maximum(n_rows, 1))
        eps = jax.random.normal(k_eps, (config.batch_size, lat))
        w = kl_weight(step0 + i, anneal_steps, config.beta_kl)
        grads, info = jax.grad(elbo_loss, has_aux=True)(p, obs[idx], action[idx], next_obs[idx], eps, w, config)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), info

    (params, opt_state), ms = jax.lax.scan(body, (params, opt_state), jnp.arange(n_steps))
    return params, opt_state, jax.tree.map(jnp.mean, ms)


@dataclasses.dataclass
class CVAEFit:
    """What :func:`fit_cvae` returns."""

    params: Any
    seconds: float  # wall time of the fit (compilation included)
    kl: float  # the KL term on the whole dataset after training (per latent dimension)
    recon: float  # the reconstruction error on the whole dataset (deterministic z = z_m)
    log: dict  # per chunk: "steps", "loss", "recon", "kl"


def fit_cvae(obs, action, next_obs, config, progress: bool = True, desc: str = "C-VAE") -> CVAEFit:
    """Train the C-VAE on (s, a) -> s' for ``config.steps`` updates (seed ``config.seed``)."""
    t0 = time.time()
    obs, action, next_obs = (jnp.asarray(x, jnp.float32) for x in (obs, action, next_obs))
    n, obs_dim, act_dim = obs.shape[0], obs.shape[-1], action.shape[-1]
    key = jax.random.PRNGKey(int(config.seed))
    params = init_cvae(jax.random.fold_in(key, 0), obs_dim, act_dim, config)
    opt_state = optimizer(config).init(params)
    steps = int(config.steps)
    anneal = float(config.anneal_frac) * steps
    chunk = max(1, int(config.chunk))
    # The data are arguments, not constants captured by the program (a large dataset would be
    # embedded in the compiled program otherwise).
    program = jax.jit(
        lambda p, o, data, k, s0, m: sgd_steps(p, o, data, n, k, m, s0, anneal, config),
        static_argnums=5, donate_argnums=(0, 1))
    log = {"steps": [], "loss": [], "recon": [], "kl": []}
    done = 0
    with progress_bar(total=steps, desc=desc, disable=not progress, unit="step") as bar:
        while done < steps:
            todo = min(chunk, steps - done)  # a shorter last chunk compiles once more
            params, opt_state, m = program(params, opt_state, (obs, action, next_obs),
                                           jax.random.fold_in(key, done + 1), done, todo)
            loss = float(m["cvae_loss"])
            if not np.isfinite(loss):
                raise FloatingPointError(f"C-VAE training diverged at step {done + todo} (loss {loss})")
            done += todo
            for k_log, k_m in (("loss", "cvae_loss"), ("recon", "cvae_recon"), ("kl", "cvae_kl")):
                log[k_log].append(float(m[k_m]))
            log["steps"].append(done)
            bar.update(todo)
            bar.set_postfix(loss=f"{loss:.4f}", kl=f"{float(m['cvae_kl']):.4f}")
    recon, kl = evaluate_cvae(params, obs, action, next_obs, config)
    return CVAEFit(params=params, seconds=time.time() - t0, kl=kl, recon=recon, log=log)


def evaluate_cvae(params, obs, action, next_obs, config) -> tuple[float, float]:
    """(reconstruction error with z = z_m, KL term) on whole arrays."""

    @jax.jit
    def run(p, obs, action, next_obs):
        z_m, z_v = encode_all(p, obs, action, config)
        net = cvae_net(config, obs.shape[-1], action.shape[-1])
        recon = net.apply(p, z_m, obs, action, method=CVAE.decode)
        return jnp.mean((recon - next_obs) ** 2), jnp.mean(gaussian_kl(z_m, z_v))

    recon, kl = run(params, *(jnp.asarray(x, jnp.float32) for x in (obs, action, next_obs)))
    return float(recon), float(kl)
