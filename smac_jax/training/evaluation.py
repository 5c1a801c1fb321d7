"""Evaluation of deterministic policies: every episode of a batch stepped in lockstep, one policy
call per time step (:func:`run_episodes`), for the training loops (:class:`Evaluator`) and the
landscape analysis; or, on a JAX-native environment, every episode inside one compiled program
(:class:`DeviceEvaluator`, the pipeline's ``eval.env = "jax"``)."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
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
    Episode ``e`` of lane ``i`` in evaluation round ``r`` resets with environment seed
    ``10_000 * (r + 1) + (base_seed + seed_index[i]) * n_episodes + e``: reproducible, different
    between rounds and seeds, and a function of the seed number ``base_seed + seed_index[i]`` itself,
    so a seed meets the same episodes whether it runs alone (``base_seed`` = the seed) or as a lane
    of a run of several. ``vectorized`` as in :func:`run_episodes`. ``seed_index``: for lanes that
    are not all different seeds (a sweep's settings x seeds), each lane's seed number, so that lanes
    with the same seed meet the same episodes (default: lane ``i`` is seed ``i``).
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
        seeds = [10_000 * (round_index + 1) + (self.base_seed + self.seed_index[i // self.n_episodes]) * self.n_episodes
                 + i % self.n_episodes for i in range(n)]
        act = lambda obs: act_fn(states, obs.reshape(self.n_seeds, self.n_episodes, -1))  # noqa: E731
        eps = run_episodes(self.envs, act, seeds, self.max_steps, self.vectorized, discount)
        return Episodes(*(x.reshape(self.n_seeds, self.n_episodes, *x.shape[1:]) for x in eps))

    def close(self):
        for env in self.envs:
            env.close()


class DeviceEvaluator:
    """:class:`Evaluator`'s counterpart on a JAX-native environment
    (:class:`smac_jax.jax_envs.JaxEnv`): every lane's ``n_episodes`` episodes run inside one
    compiled program (a ``while_loop`` over time steps, one policy call per step for all of them),
    with no host call, until every episode has ended or ``max_steps`` steps were taken.

    Episode ``e`` of lane ``i`` in evaluation round ``r`` starts from ``reset(key)`` with
    ``key = fold_in(fold_in(PRNGKey(0), r), (base_seed + seed_index[i]) * n_episodes + e)``:
    reproducible, different between rounds and seeds, the same for lanes with the same seed number
    (also for a seed run alone, ``base_seed`` = the seed, and as a lane of a run of several). The start
    states are therefore other draws than :class:`Evaluator`'s (same distribution). Success is not
    reported (NaN), as the ported environments report none.
    """

    def __init__(self, env, n_seeds: int, n_episodes: int, base_seed: int, max_steps: int = 100_000,
                 seed_index: Sequence[int] | None = None):
        self.env, self.n_seeds, self.n_episodes = env, n_seeds, n_episodes
        self.seed_index = np.asarray(list(range(n_seeds)) if seed_index is None else list(seed_index))
        if len(self.seed_index) != n_seeds:
            raise ValueError(f"seed_index has {len(self.seed_index)} entries for {n_seeds} lanes")
        self.base_seed, self.max_steps = int(base_seed), int(max_steps)
        self._programs = {}  # (act_fn, discount) -> the compiled evaluation

    def keys(self, round_index: int) -> jax.Array:
        """The episodes' reset keys, shape (n_seeds, n_episodes, 2)."""
        base = jax.random.fold_in(jax.random.PRNGKey(0), round_index)
        ids = (self.base_seed + self.seed_index[:, None]) * self.n_episodes + np.arange(self.n_episodes)[None, :]
        return jax.vmap(jax.vmap(lambda i: jax.random.fold_in(base, i)))(jnp.asarray(ids, jnp.uint32))

    def __call__(self, act_fn, states, round_index: int, discount: float = 1.0) -> Episodes:
        """:class:`Episodes` with every array shaped (n_seeds, n_episodes, ...)."""
        return self.run(act_fn, states, self.keys(round_index), discount)

    def run(self, act_fn, states, keys: jax.Array, discount: float = 1.0) -> Episodes:
        """The episodes that start from ``reset(keys[i, e])``, lane ``i`` acting with
        ``act_fn(states, obs)``; ``keys`` of any shape (lanes, episodes, 2)."""
        key = (act_fn, float(discount))
        if key not in self._programs:
            self._programs[key] = jax.jit(self._program(act_fn, float(discount)))
        returns, lengths, discounted, first_obs = jax.device_get(self._programs[key](states, keys))
        return Episodes(returns.astype(np.float64), lengths.astype(np.int64), discounted.astype(np.float64),
                        first_obs, np.full(returns.shape, np.nan))

    def _program(self, act_fn, discount: float):
        env, max_steps = self.env, self.max_steps
        reset, step = jax.vmap(jax.vmap(env.reset)), jax.vmap(jax.vmap(env.step))

        def run(states, keys):
            env_state, obs = reset(keys)
            zeros = jnp.zeros(keys.shape[:2], jnp.float32)
            carry = (env_state, obs, jnp.ones(keys.shape[:2], bool), zeros, zeros, zeros.astype(jnp.int32),
                     jnp.float32(1.0), jnp.int32(0))

            def cond(c):
                return c[2].any() & (c[7] < max_steps)

            def body(c):
                env_state, obs, active, ret, disc, length, weight, t = c
                action = act_fn(states, obs)
                env_state, _, next_obs, reward, terminated, truncated = step(keys, env_state, action)
                ret = ret + jnp.where(active, reward, 0.0)
                disc = disc + jnp.where(active, weight * reward, 0.0)
                length = length + active.astype(jnp.int32)
                active = active & ~(terminated | truncated)
                return env_state, next_obs, active, ret, disc, length, weight * discount, t + 1

            _, _, _, ret, disc, length, _, _ = jax.lax.while_loop(cond, body, carry)
            return ret, length, disc, obs

        return run

    def close(self):
        pass


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
