"""Host side of online interaction: one Gymnasium environment per seed, stepped together."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from smac_jax.data import replay
from smac_jax.types import Transitions


class OnlineCollector:
    """Steps ``n`` environments (one per seed) with SAME_STEP autoreset and builds the transitions
    to insert: ``next_obs`` is the true final observation when an episode ended, rewards are scaled
    (``reward * reward_scale + reward_bias``, as the offline data), and bootstrapping is cut by
    ``terminated`` only. Environment ``i`` is reset with seed ``seeds[i] * 7919 + start_step``."""

    def __init__(self, env_fn: Callable[[], gym.Env], seeds: list[int], start_step: int = 0,
                 reward_scale: float = 1.0, reward_bias: float = 0.0):
        self.n = len(seeds)
        self.envs = gym.vector.SyncVectorEnv([env_fn for _ in seeds], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.obs, _ = self.envs.reset(seed=[s * 7919 + start_step for s in seeds])
        self.obs = self.obs.astype(np.float32)
        self.reward_scale, self.reward_bias = reward_scale, reward_bias
        self._zeros = np.zeros(self.n, np.float32)
        self._no_mc = np.full(self.n, replay.NO_MC_RETURN, np.float32)
        self._episode = np.full(self.n, -1, np.int32)
        self.episode_returns = np.zeros(self.n)
        self.finished_returns: list[list[float]] = [[] for _ in seeds]

    def step(self, actions: np.ndarray) -> tuple[Transitions, np.ndarray]:
        """Apply ``actions`` (n, act_dim); returns (transitions to insert, observations to act on)."""
        next_obs, rew, term, trunc, info = self.envs.step(actions)
        next_obs = next_obs.astype(np.float32)
        real_next = next_obs
        done = term | trunc
        self.episode_returns += rew
        if done.any():
            real_next = next_obs.copy()
            for i in np.nonzero(done)[0]:
                if "_final_obs" in info and info["_final_obs"][i]:
                    real_next[i] = info["final_obs"][i]
                self.finished_returns[i].append(float(self.episode_returns[i]))
                self.episode_returns[i] = 0.0
        t = Transitions(
            obs=self.obs, action=actions, reward=(rew * self.reward_scale + self.reward_bias).astype(np.float32),
            next_obs=real_next, terminated=term.astype(np.float32), truncated=trunc.astype(np.float32),
            episode=self._episode, rtg=self._zeros, mc_return=self._no_mc, traj_return=self._zeros,
        )
        self.obs = next_obs
        return t, next_obs

    def step_packed(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` with the transitions packed into replay rows (``replay.pack``): the host
        side of :func:`smac_jax.training.steps.make_online_loop`."""
        t, next_obs = self.step(actions)
        return replay.pack(t, np), next_obs

    def close(self) -> None:
        self.envs.close()
