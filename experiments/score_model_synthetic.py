"""Synthetic check of SMAC's dataset score model at the full default architecture.

Trains the return-conditioned DDPM (``smac_jax.score.model``, hidden 256, three 1024-wide residual
blocks, T = 5) on a conditional Gaussian with an analytic score and reports

* the agreement of ``score(s, a)`` (= -eps(a, k=1, s, w) / sigma_1) with the analytic score of the
  k=1 noised marginal, grad log N(x; sqrt(abar_1) mu(s, w), abar_1 S + sigma_1^2 I) at x = a, over
  (s, w, a) drawn from the data: mean cosine similarity and median norm ratio |model| / |analytic|;
* the moments of ``sample`` for a few conditioning values, next to the data's and to those of the
  same T = 5 reverse chain run with the exact eps (the chain contracts narrow distributions by
  itself, so that is the fair target for the spread).

The synthetic problem is the one of ``tests/test_score_model.py``:
s ~ U[-1, 1]^2, w ~ U[0, 1], a ~ N(mu(s, w), S), stds (0.15, 0.10), correlation 0.5.

    python experiments/score_model_synthetic.py --steps=6000
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from smac_jax.cli import run_cli
from smac_jax.score import model as sm

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 6000, "Gradient steps.")
flags.DEFINE_integer("chunk", 1000, "Steps per fused lax.scan call (one log line each).")
flags.DEFINE_float("lr", 3e-4, "Adam learning rate (default of the score model config).")
flags.DEFINE_integer("n_data", 100_000, "Synthetic dataset size.")
flags.DEFINE_integer("n_eval", 10_000, "Points for the score comparison and samples per condition.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("sample_noise", "beta", "'beta' or 'posterior' (reverse-chain noise).")

ACT_DIM = 2
OBS_DIM = 2
STD = np.array([0.15, 0.10])
RHO = 0.5
COV = np.array([[STD[0] ** 2, RHO * STD[0] * STD[1]], [RHO * STD[0] * STD[1], STD[1] ** 2]])
CONDITIONS = [((0.5, -0.5), 0.2), ((-0.7, 0.8), 0.9), ((0.0, 0.0), 1.0)]


def synthetic_mean(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.stack(
        [0.45 * s[:, 0] + 0.4 * (w - 0.5), 0.4 * np.sin(1.5 * s[:, 1]) - 0.3 * (w - 0.5)], axis=-1
    )


def synthetic_data(rng: np.random.Generator, n: int):
    s = rng.uniform(-1.0, 1.0, (n, OBS_DIM))
    w = rng.uniform(0.0, 1.0, n)
    a = synthetic_mean(s, w) + rng.standard_normal((n, ACT_DIM)) @ np.linalg.cholesky(COV).T
    return s.astype(np.float32), w.astype(np.float32), a.astype(np.float32)


def exact_eps(mean: np.ndarray, config):
    """E[eps | x_k] for data N(mean, COV)."""
    return sm.gaussian_eps(mean, COV, config.T, config.beta_min, config.beta_max)


def moments(x: np.ndarray) -> str:
    return (
        f"mean=({x[:, 0].mean():+.3f}, {x[:, 1].mean():+.3f}) "
        f"std=({x[:, 0].std():.3f}, {x[:, 1].std():.3f}) corr={np.corrcoef(x.T)[0, 1]:+.2f}"
    )


def main(argv):
    del argv
    config = sm.default_score_config()  # full architecture: hidden 256, 3 x 1024-wide blocks
    config.lr = FLAGS.lr
    config.sample_noise = FLAGS.sample_noise
    print(f"devices: {jax.devices()}")
    print(f"config: hidden={config.hidden_dim} blocks={config.n_blocks} T={config.T} "
          f"lr={config.lr} ema={config.ema} batch={config.batch_size} steps={FLAGS.steps}")

    key = jax.random.PRNGKey(FLAGS.seed)
    init_key, train_key, sample_key = jax.random.split(key, 3)
    s, w, a = (jnp.asarray(x) for x in synthetic_data(np.random.default_rng(FLAGS.seed), FLAGS.n_data))
    state = sm.init_score_model(init_key, OBS_DIM, ACT_DIM, config)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    print(f"parameters: {n_params:,}")

    start = time.time()
    done = 0
    while done < FLAGS.steps:
        n = min(FLAGS.chunk, FLAGS.steps - done)
        train_key, chunk_key = jax.random.split(train_key)
        state, metrics = sm.train_steps(state, s, a, w, chunk_key, n, config)
        done += n
        print(f"step {done:6d}  loss {float(metrics['loss'].mean()):.4f}  "
              f"({time.time() - start:.0f} s)", flush=True)

    params = state.ema_params
    abar_1 = float(sm.vp_schedule(config.T, config.beta_min, config.beta_max)[2][0])
    es, ew, ea = synthetic_data(np.random.default_rng(FLAGS.seed + 1), FLAGS.n_eval)
    mean = synthetic_mean(es, ew)
    analytic = -(ea - np.sqrt(abar_1) * mean) @ np.linalg.inv(abar_1 * COV + (1 - abar_1) * np.eye(ACT_DIM))
    model = np.asarray(jax.jit(lambda p, o, x, c: sm.score(p, o, x, c, config))(params, es, ea, ew), np.float64)
    cos = np.sum(model * analytic, -1) / (np.linalg.norm(model, axis=-1) * np.linalg.norm(analytic, axis=-1))
    ratio = np.linalg.norm(model, axis=-1) / np.linalg.norm(analytic, axis=-1)
    print(f"\nscore vs analytic k=1 noised-marginal score (sigma_1={np.sqrt(1 - abar_1):.4f}, EMA params):")
    print(f"  cosine similarity: mean {cos.mean():.4f}, 5th percentile {np.percentile(cos, 5):.4f}")
    print(f"  |model|/|analytic|: median {np.median(ratio):.4f}, IQR [{np.percentile(ratio, 25):.3f}, "
          f"{np.percentile(ratio, 75):.3f}]")

    print(f"\nsampler moments ({FLAGS.n_eval} samples per condition, sample_noise={config.sample_noise}):")
    sample_fn = jax.jit(lambda p, o, c, k: sm.sample(p, o, c, k, config))
    for i, (obs, wv) in enumerate(CONDITIONS):
        n = FLAGS.n_eval
        o = np.tile(np.asarray(obs, np.float32), (n, 1))
        wc = np.full((n,), wv, np.float32)
        mu = synthetic_mean(o[:1], wc[:1])[0]
        k1, k2, k3 = jax.random.split(jax.random.fold_in(sample_key, i), 3)
        x = np.asarray(sample_fn(params, o, wc, k1))
        exact = np.asarray(sm.ddpm_reverse_chain(exact_eps(mu, config), jax.random.normal(k2, (n, ACT_DIM)), k3, config))
        data = mu + np.random.default_rng(i).standard_normal((n, ACT_DIM)) @ np.linalg.cholesky(COV).T
        print(f"  s={obs} w={wv}: true mean ({mu[0]:+.3f}, {mu[1]:+.3f})")
        print(f"    model sampler : {moments(x)}")
        print(f"    exact-eps chain: {moments(exact)}")
        print(f"    data           : {moments(data)}")


if __name__ == "__main__":
    run_cli(main)
