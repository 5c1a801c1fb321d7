"""Fit the SMAC dataset score model (docs/algorithms.md, SMAC) once, so many SMAC runs and seeds can share it.

    python experiments/train_score_model.py --dataset=smac_jax/pendulum/medium-replay-v0 \
        --out=score_models/pendulum-mr --steps=50000
    python experiments/o2o.py --config=configs/o2o.py:pendulum,smac,sac \
        --config.offline.agent.score_model_path=score_models/pendulum-mr --workdir=runs/x

It also reports how well the model fits: the return of the policy that samples actions from the
reverse DDPM chain conditioned on w = --eval_w (behaviour cloning of the best trajectories).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from smac_jax.cli import fail, run_cli
from smac_jax.data.dataset import load_dataset
from smac_jax.runtime import tune_host_allocator
from smac_jax.score import model as sm
from smac_jax.score.train import fit_or_load_score_model

_DATASET = flags.DEFINE_string("dataset", "smac_jax/pendulum/medium-replay-v0", "Minari dataset id.")
_OUT = flags.DEFINE_string("out", None, "Directory to save the model in.", required=True)
_STEPS = flags.DEFINE_integer("steps", 50_000, "Gradient steps.")
_NORM = flags.DEFINE_bool("normalize_obs", False, "Standardise observations (must match the SMAC runs).")
_REWARD = flags.DEFINE_enum("reward", "env", ["env", "success"], "The dataset's reward (dataset.reward of the SMAC "
                            "runs; 'success': binary, from the stored success infos).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 5, "Episodes of the sampled policy (0: skip).")
_EVAL_W = flags.DEFINE_float("eval_w", 1.0, "Return conditioning of the sampled policy.")


def main(argv):
    del argv
    tune_host_allocator()
    logging.set_verbosity(logging.WARNING)
    if _STEPS.value < 1:
        fail(f"--steps must be >= 1, got {_STEPS.value}")
    if _EVAL_EPISODES.value < 0:
        fail(f"--eval_episodes must be >= 0, got {_EVAL_EPISODES.value}")
    if not 0.0 <= _EVAL_W.value <= 1.0:
        fail(f"--eval_w must be in [0, 1] (the return conditioning: 1 = the best trajectories), got {_EVAL_W.value}")
    if _SEED.value < 0:
        fail(f"--seed must be >= 0, got {_SEED.value}")
    ds = load_dataset(_DATASET.value, normalize_obs=_NORM.value, reward=_REWARD.value)
    cfg = sm.default_score_config()
    cfg.steps = _STEPS.value
    params, cfg = fit_or_load_score_model(_OUT.value, ds, cfg, seed=_SEED.value)
    if _EVAL_EPISODES.value:
        env = ds.make_env()
        act = jax.jit(lambda o, k: sm.sample(params, o[None], _EVAL_W.value, k, cfg)[0])
        rets = []
        for ep in range(_EVAL_EPISODES.value):
            obs, _ = env.reset(seed=10_000 + ep)
            done, ret, key = False, 0.0, jax.random.PRNGKey(ep)
            while not done:
                key, k = jax.random.split(key)
                obs, r, term, trunc, _ = env.step(np.asarray(act(jnp.asarray(obs), k)))
                ret += float(r)
                done = term or trunc
            rets.append(ret)
        res = {"sampled_policy_return": float(np.mean(rets)), "episodes": rets,
               "dataset_episode_return_mean": float(ds.episode_returns().mean()),
               "dataset_episode_return_max": float(ds.episode_returns().max())}
        if ds.ref_min_score is not None:
            res["sampled_policy_score"] = float(ds.normalized_score(np.mean(rets)))
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    run_cli(main)
