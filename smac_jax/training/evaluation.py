"""Evaluation of deterministic policies: every episode of a batch stepped in lockstep, one policy
call per time step (:func:`run_episodes`), for the training loops (:class:`Evaluator`) and the
landscape analysis."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import gymnasium as gym
import jax
import numpy as np

from smac_jax.training.steps import seed_vmap
from smac_jax.vector_mujoco import locomotion_batch


class Episodes(NamedTuple):
    """What :func:`run_episodes` measured, one entry per environment."""

    returns: np.ndarray  # undiscounted returns
    lengths: np.ndarray  # steps taken
    discounted: np.ndarray  # sum_t discount^t r_t (the return a critic estimates at the start state)
    first_obs: np.ndarray  # the start states, (N, obs_dim)
    # 1.0 if some step of the episode reported info["success"], else 0.0; NaN where the
    # environment reports no success (or was stepped by the vectorised locomotion stepper)
    success: np.ndarray


def run_episodes(envs: Sequence[gym.Env], act: Callable[[np.ndarray], np.ndarray], seeds: Sequence[int],
                 max_steps: int | None = None, vectorized: bool | None = None, discount: float = 1.0,
                 threads: int | None = None) -> Episodes:
    """One episode per environment, all stepped in lockstep: env ``i`` is reset with ``seeds[i]``,
    then per time step ONE call ``act(obs[N, obs_dim]) -> actions[N, act_dim]`` and every
    unfinished environment is stepped (finished ones are not; their rows of ``act`` are ignored).
    ``max_steps`` caps the episode length (default: the environments' own time limits).

    ``vectorized``: step with :class:`smac_jax.vector_mujoco.LocomotionBatch` (gymnasium's MuJoCo
    Hopper, Walker2d and HalfCheetah v5: the same physics calls, observations, rewards and time
    limits computed for the whole batch, results identical to ``env.step``'s at less than half the
    cost per step). ``None``: when the environments support it; ``False``: always ``env.step``;
    ``True``: required (an error otherwise). ``threads``: the lockstep stepper's physics threads
    (``None``: one per 16 environments up to the CPU count; results identical for any value).

    Returns :class:`Episodes`: the undiscounted returns, the episode lengths, the returns
    discounted with ``discount`` (each shape (N,)), the start states, and whether each episode
    succeeded (some step's ``info["success"]`` true; NaN for environments that report none).
    """
    obs = np.stack([env.reset(seed=int(sd))[0] for env, sd in zip(envs, seeds)])
    first_obs = obs.copy()
    batch = None if vectorized is False else locomotion_batch(envs, threads)
    if vectorized and batch is None:
        raise ValueError(f"vectorized=True: {envs[0].spec.id if envs[0].spec else type(envs[0].unwrapped).__name__} "
                         "is not a task smac_jax.vector_mujoco steps (Hopper, Walker2d, HalfCheetah v5)")
    n = len(envs)
    returns, discounted = np.zeros(n), np.zeros(n)
    lengths, active = np.zeros(n, np.int64), np.ones(n, bool)
    success, reports = np.zeros(n, bool), np.zeros(n, bool)
    steps = 0
    try:
        while active.any() and (max_steps is None or steps < max_steps):
            actions = np.asarray(act(obs)).reshape(n, -1)
            idx = np.flatnonzero(active)
            if batch is not None:
                o, r, terminated, truncated = batch.step(actions, active)
            else:
                o, r, terminated, truncated, infos = zip(*(envs[i].step(actions[i]) for i in idx))
                for i, info in zip(idx, infos):
                    if "success" in info:
                        reports[i] = True
                        success[i] |= bool(info["success"])
            obs[idx] = np.stack(o)
            returns[idx] += np.asarray(r, np.float64)
            discounted[idx] += float(discount) ** steps * np.asarray(r, np.float64)
            lengths[idx] += 1
            active[idx] = ~(np.asarray(terminated, bool) | np.asarray(truncated, bool))
            steps += 1
    finally:
        if batch is not None:
            batch.close()
    return Episodes(returns, lengths, discounted, first_obs, np.where(reports, success.astype(np.float64), np.nan))


class Evaluator:
    """Runs ``n_episodes`` per seed with the deterministic policy through :func:`run_episodes`.

    ``act_fn(states, obs[S, n, obs_dim]) -> actions[S, n, act_dim]`` is jitted once by the caller.
    Environment seeds for evaluation round ``r`` are ``base_seed + 10_000 * (r + 1) + env_index``,
    so evaluations are reproducible and differ between rounds and seeds. ``vectorized`` as in
    :func:`run_episodes`. ``seed_index``: for lanes that are not all different seeds (a sweep's
    settings x seeds), each lane's seed number, so that lanes with the same seed meet the same
    episodes (default: lane ``i`` is seed ``i``).
    """

    def __init__(self, env_fn: Callable[[], gym.Env], n_seeds: int, n_episodes: int, base_seed: int,
                 max_steps: int = 100_000, vectorized: bool | None = None, seed_index: Sequence[int] | None = None):
        self.n_seeds, self.n_episodes = n_seeds, n_episodes
        self.seed_index = list(range(n_seeds)) if seed_index is None else list(seed_index)
        if len(self.seed_index) != n_seeds:
            raise ValueError(f"seed_index has {len(self.seed_index)} entries for {n_seeds} lanes")
        self.base_seed = base_seed
        self.max_steps = max_steps
        self.vectorized = vectorized
        self.envs = [env_fn() for _ in range(n_seeds * n_episodes)]

    def __call__(self, act_fn, states, round_index: int, discount: float = 1.0) -> Episodes:
        """:class:`Episodes` with every array shaped (n_seeds, n_episodes, ...)."""
        n = self.n_seeds * self.n_episodes
        seeds = [self.base_seed + 10_000 * (round_index + 1) + self.seed_index[i // self.n_episodes] * self.n_episodes
                 + i % self.n_episodes for i in range(n)]
        act = lambda obs: act_fn(states, obs.reshape(self.n_seeds, self.n_episodes, -1))  # noqa: E731
        eps = run_episodes(self.envs, act, seeds, self.max_steps, self.vectorized, discount)
        return Episodes(*(x.reshape(self.n_seeds, self.n_episodes, *x.shape[1:]) for x in eps))

    def close(self):
        for env in self.envs:
            env.close()


def in_critic_units(discounted: np.ndarray, lengths: np.ndarray, gamma: float, reward_scale: float = 1.0,
                    reward_bias: float = 0.0) -> np.ndarray:
    """Discounted environment returns in the units a critic trained on ``reward * reward_scale +
    reward_bias`` estimates: the scale applied, and the bias summed over the steps taken."""
    lengths = np.asarray(lengths)
    steps = (1 - gamma**lengths) / (1 - gamma) if gamma < 1 else lengths.astype(np.float64)
    return reward_scale * np.asarray(discounted) + reward_bias * steps


def make_value_fn(learner):
    """jit(vmap over seeds) of ``learner.value_estimate`` on a (S, n, obs_dim) block (for states
    with a ``critic`` parameter group)."""
    key = jax.random.PRNGKey(0)  # unused: the deterministic action
    return jax.jit(seed_vmap(lambda st, o: learner.value_estimate(st, o, key), (0, 0)))


def make_act_fn(learner, deterministic: bool = True):
    """jit(vmap over seeds) of ``learner.act`` on a (S, n, obs_dim) observation block."""
    key = jax.random.PRNGKey(0)  # unused when deterministic
    return jax.jit(seed_vmap(lambda st, o: learner.act(st, o, key, deterministic), (0, 0)))
