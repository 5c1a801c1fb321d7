"""Evaluation of the deterministic policy of every seed, all episodes stepped as one vector env."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import jax
import numpy as np

from smac_jax.training.steps import seed_vmap
from smac_jax.vector_mujoco import locomotion_batch


class Evaluator:
    """Runs ``n_episodes`` per seed with the deterministic policy; one policy call per time step.

    ``act_fn(states, obs[S, n, obs_dim]) -> actions[S, n, act_dim]`` is jitted once by the caller.
    Environment seeds for evaluation round ``r`` are ``base_seed + 10_000 * (r + 1) + env_index``,
    so evaluations are reproducible and differ between rounds and seeds.
    """

    def __init__(self, env_fn: Callable[[], gym.Env], n_seeds: int, n_episodes: int, base_seed: int,
                 max_steps: int = 100_000, vectorized: bool = True):
        self.n_seeds, self.n_episodes = n_seeds, n_episodes
        self.base_seed = base_seed
        self.max_steps = max_steps
        envs = [env_fn() for _ in range(n_seeds * n_episodes)]
        # MuJoCo locomotion tasks are stepped by smac_jax.vector_mujoco (identical returns, no
        # per-step gymnasium Python, finished episodes no longer stepped); others by a vector env.
        self.single = envs if vectorized and locomotion_batch(envs) is not None else None
        self.envs = None if self.single else gym.vector.SyncVectorEnv(
            [lambda e=e: e for e in envs], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )

    def __call__(self, act_fn, states, round_index: int) -> np.ndarray:
        """Undiscounted returns, shape (n_seeds, n_episodes)."""
        n = self.n_seeds * self.n_episodes
        seeds = [self.base_seed + 10_000 * (round_index + 1) + i for i in range(n)]
        if self.single:
            return self._run_lockstep(act_fn, states, seeds)
        obs, _ = self.envs.reset(seed=seeds)
        returns = np.zeros(n)
        active = np.ones(n, bool)
        for _ in range(self.max_steps):
            actions = np.asarray(act_fn(states, obs.reshape(self.n_seeds, self.n_episodes, -1)))
            obs, rew, term, trunc, _ = self.envs.step(actions.reshape(n, -1))
            returns += rew * active
            active &= ~(term | trunc)
            if not active.any():
                break
        return returns.reshape(self.n_seeds, self.n_episodes)

    def _run_lockstep(self, act_fn, states, seeds) -> np.ndarray:
        obs = np.stack([env.reset(seed=sd)[0] for env, sd in zip(self.single, seeds)])
        batch = locomotion_batch(self.single)  # fresh time-limit counters every round
        returns = np.zeros(len(seeds))
        active = np.ones(len(seeds), bool)
        for _ in range(self.max_steps):
            actions = np.asarray(act_fn(states, obs.reshape(self.n_seeds, self.n_episodes, -1))).reshape(len(seeds), -1)
            idx = np.flatnonzero(active)
            o, r, terminated, truncated = batch.step(actions, active)
            obs[idx] = np.stack(o)
            returns[idx] += r
            active[idx] = ~(terminated | truncated)
            if not active.any():
                break
        return returns.reshape(self.n_seeds, self.n_episodes)

    def close(self):
        for env in self.single or ():
            env.close()
        if self.envs is not None:
            self.envs.close()


def make_act_fn(learner, deterministic: bool = True):
    """jit(vmap over seeds) of ``learner.act`` on a (S, n, obs_dim) observation block."""
    key = jax.random.PRNGKey(0)  # unused when deterministic
    return jax.jit(seed_vmap(lambda st, o: learner.act(st, o, key, deterministic), (0, 0)))
