"""Host side of online interaction: one Gymnasium environment per seed, stepped together."""
from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from smac_jax.data import replay
from smac_jax.types import Transitions


class OnlineCollector:
    """Steps ``n`` environments (one per seed) and builds the transitions to insert.

    Each environment is reset with seed ``seeds[i] * 7919 + start_step``, and again (unseeded,
    continuing its own RNG) as soon as an episode ends, within the same step: the returned
    observation to act on is then the new episode's first, while the transition keeps the true
    final observation as ``next_obs``. This is Gymnasium's ``SyncVectorEnv`` with
    ``AutoresetMode.SAME_STEP``, step for step (``tests/test_online_loop.py`` checks it against
    that class); the environments are stepped in a plain loop because the vector env's info
    bookkeeping is a measurable share of a Hopper step in the fused online loop (``docs/README.md``).
    Rewards are scaled (``reward * reward_scale + reward_bias``, as the offline data), and
    bootstrapping is cut by ``terminated`` only.

    Resuming: :meth:`state_dict` records, per environment, how its current episode began (the
    reset seed, or the environment's RNG state before an unseeded reset) and the actions taken
    since; :meth:`load_state_dict` rebuilds the environments by replaying that episode, which
    puts a deterministic environment (Gymnasium's MuJoCo and classic-control tasks) back in
    exactly the state it had, RNG included. Replaying costs at most one episode of steps; it
    keeps checkpoints small and works for any environment whose dynamics depend only on its RNG
    and the actions, where pickling simulator objects would not."""

    def __init__(self, env_fn: Callable[[], gym.Env], seeds: list[int], start_step: int = 0,
                 reward_scale: float = 1.0, reward_bias: float = 0.0):
        self.n = len(seeds)
        self.envs = [env_fn() for _ in seeds]
        # How each environment's current episode began, and the actions taken since (for resuming).
        self._starts: list[dict] = [{"seed": s * 7919 + start_step} for s in seeds]
        self._actions: list[list[list[float]]] = [[] for _ in seeds]
        first = [env.reset(seed=s * 7919 + start_step)[0] for env, s in zip(self.envs, seeds)]
        self.obs = np.stack(first).astype(np.float32)
        self.reward_scale, self.reward_bias = reward_scale, reward_bias
        self._zeros = np.zeros(self.n, np.float32)
        self._no_mc = np.full(self.n, replay.NO_MC_RETURN, np.float32)
        self._episode = np.full(self.n, -1, np.int32)
        self.episode_returns = np.zeros(self.n)
        self.finished_returns: list[list[float]] = [[] for _ in seeds]

    def step(self, actions: np.ndarray) -> tuple[Transitions, np.ndarray]:
        """Apply ``actions`` (n, act_dim); returns (transitions to insert, observations to act on)."""
        n = self.n
        final_obs, next_obs = np.empty_like(self.obs), np.empty_like(self.obs)
        rew = np.empty(n)
        term, trunc = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for i, env in enumerate(self.envs):
            obs, rew[i], terminated, truncated, _ = env.step(actions[i])
            self._actions[i].append(np.asarray(actions[i], np.float32).tolist())
            final_obs[i] = obs
            self.episode_returns[i] += rew[i]
            if terminated or truncated:
                term[i], trunc[i] = float(terminated), float(truncated)
                self.finished_returns[i].append(float(self.episode_returns[i]))
                self.episode_returns[i] = 0.0
                self._starts[i] = {"rng": _rng_state(env)}
                self._actions[i] = []
                obs, _ = env.reset()
            next_obs[i] = obs
        t = Transitions(
            obs=self.obs, action=actions, reward=(rew * self.reward_scale + self.reward_bias).astype(np.float32),
            next_obs=final_obs, terminated=term, truncated=trunc,
            episode=self._episode, rtg=self._zeros, mc_return=self._no_mc, traj_return=self._zeros,
        )
        self.obs = next_obs
        return t, next_obs

    def step_packed(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` with the transitions packed into replay rows (``replay.pack``): the host
        side of :func:`smac_jax.training.steps.make_online_loop`."""
        t, next_obs = self.step(actions)
        return replay.pack(t, np), next_obs

    def state_dict(self) -> dict:
        """JSON-serialisable state from which :meth:`load_state_dict` rebuilds the environments."""
        return {"starts": self._starts, "actions": self._actions,
                "episode_returns": self.episode_returns.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Put every environment back where :meth:`state_dict` was taken, by replaying its episode."""
        if len(state["starts"]) != self.n:
            raise ValueError(f"collector state holds {len(state['starts'])} environments, this run has {self.n}")
        obs = np.empty_like(self.obs)
        for i, env in enumerate(self.envs):
            start, acts = state["starts"][i], state["actions"][i]
            if "seed" in start:
                o, _ = env.reset(seed=start["seed"])
            else:
                _set_rng_state(env, start["rng"])
                o, _ = env.reset()
            for a in acts:
                o, _, terminated, truncated, _ = env.step(np.asarray(a, np.float32))
                if terminated or truncated:
                    raise ValueError("replaying the checkpointed episode ended it early: the environment "
                                     "is not deterministic given its RNG state and actions")
            obs[i] = o
        self._starts = [dict(s) for s in state["starts"]]
        self._actions = [list(a) for a in state["actions"]]
        self.episode_returns = np.asarray(state["episode_returns"], np.float64)
        self.obs = obs

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _rng_state(env: gym.Env) -> dict:
    return _jsonable(env.unwrapped.np_random.bit_generator.state)


def _set_rng_state(env: gym.Env, state: dict) -> None:
    gen = np.random.Generator(getattr(np.random, state["bit_generator"])())
    gen.bit_generator.state = state
    env.unwrapped.np_random = gen


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.integer):
        return int(x)
    return x
