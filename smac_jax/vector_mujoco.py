"""Many copies of one gymnasium MuJoCo locomotion task stepped in lockstep, without gymnasium's
per-step Python.

A gymnasium ``Hopper-v5`` step costs about 3x its physics: the wrappers, the observation, the
reward and the health check are Python run once per environment. :class:`LocomotionBatch` takes
environments built (and reset) the usual way, steps each one's own ``MjData`` with exactly the
calls gymnasium makes (``mj_step`` with the frame skip, then ``mj_rnePostConstraint``), and
computes observations, rewards, terminations and time-limit truncations for the whole batch with
NumPy, using the same floating-point operations as the gymnasium source. The results are
identical to calling ``env.step`` on every environment (tests/test_vector_mujoco.py checks
returns and episode lengths for equality).

Supported: ``Hopper-v5``, ``Walker2d-v5`` and ``HalfCheetah-v5`` (any of their constructor
arguments; their values are read from the environment), wrapped by ``TimeLimit``,
``OrderEnforcing``, ``PassiveEnvChecker`` and any observation or action wrappers (applied per
environment, as gymnasium applies them), without rendering. :func:`locomotion_batch` returns
``None`` for anything else, so callers fall back to ``env.step``.

The physics is what is left (on Hopper about 83% of a lockstep step), and MuJoCo's Python
bindings release the GIL inside ``mj_step``: with ``threads > 1`` the environments' physics runs
in that many threads, each stepping its own share of the ``MjData`` (the model is only read), so
the results stay identical and the physics time divides by the cores available.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import gymnasium as gym
import mujoco
import numpy as np

_PASSIVE = ("TimeLimit", "OrderEnforcing", "PassiveEnvChecker")
#: With ``threads=None``, one physics thread per this many environments, up to the CPU count: a
#: thread's share of a step must outweigh handing it over (small batches, e.g. the training
#: loops' 3 seeds x 5 episodes, stay in the calling thread).
ENVS_PER_THREAD = 16


def default_threads(n_envs: int) -> int:
    """Physics threads for ``n_envs`` environments when none are asked for."""
    return max(1, min(os.cpu_count() or 1, n_envs // ENVS_PER_THREAD))


def _kind(unwrapped) -> str | None:
    """'hopper' / 'walker2d' / 'halfcheetah' for the v5 gymnasium classes, else None."""
    try:
        from gymnasium.envs.mujoco import half_cheetah_v5, hopper_v5, walker2d_v5
    except Exception:  # MuJoCo environments not installed
        return None
    return {hopper_v5.HopperEnv: "hopper", walker2d_v5.Walker2dEnv: "walker2d",
            half_cheetah_v5.HalfCheetahEnv: "halfcheetah"}.get(type(unwrapped))


def _wrapper_chain(env: gym.Env):
    """(observation wrappers inner -> outer, action wrappers outer -> inner, time limit) or None
    when a wrapper could change the step in a way this module does not reproduce."""
    obs_wrappers, act_wrappers, limit = [], [], None
    e = env
    while isinstance(e, gym.Wrapper):
        name = type(e).__name__
        if isinstance(e, gym.ObservationWrapper):
            obs_wrappers.append(e)
        elif isinstance(e, gym.ActionWrapper):
            act_wrappers.append(e)
        elif name == "TimeLimit":
            limit = int(e._max_episode_steps)
        elif name not in _PASSIVE:
            return None
        e = e.env
    return obs_wrappers[::-1], act_wrappers, limit


def locomotion_batch(envs: Sequence[gym.Env], threads: int | None = None) -> "LocomotionBatch | None":
    """A :class:`LocomotionBatch` over ``envs`` (all built the same way and just reset), or
    ``None`` when they are not a supported task or carry a wrapper it cannot reproduce.
    ``threads``: physics threads (``None``: :func:`default_threads`; 1: none besides the caller's).
    Call ``close()`` when done (it stops the threads)."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if not envs:
        return None
    first = envs[0].unwrapped
    kind = _kind(first)
    if kind is None or getattr(first, "render_mode", None) is not None:
        return None
    chains = [_wrapper_chain(e) for e in envs]
    if any(c is None for c in chains):
        return None
    types = [tuple(type(w) for w in c[0] + c[1]) for c in chains]
    if any(type(e.unwrapped) is not type(first) or t != types[0] or c[2] != chains[0][2]
           for e, c, t in zip(envs, chains, types)):
        return None
    return LocomotionBatch(envs, kind, chains, default_threads(len(envs)) if threads is None else threads)


class LocomotionBatch:
    """Lockstep stepping of supported MuJoCo locomotion environments (see the module docstring).

    ``step(actions, active)`` steps the environments where ``active`` is true with their rows of
    ``actions`` (the actions the caller would pass to ``env.step``) and returns
    ``(obs, reward, terminated, truncated)`` for those rows, in order.
    """

    def __init__(self, envs: Sequence[gym.Env], kind: str, chains, threads: int = 1):
        u = envs[0].unwrapped
        self.kind = kind
        self.threads = int(threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mujoco") if self.threads > 1 else None
        self.model = u.model
        self.datas = [e.unwrapped.data for e in envs]
        self.frame_skip = int(u.frame_skip)
        self.dt = u.dt
        self.obs_wrappers = [c[0] for c in chains]
        self.act_wrappers = [c[1] for c in chains]
        self.limit = chains[0][2]
        self.elapsed = np.zeros(len(envs), np.int64)
        self.forward_w = u._forward_reward_weight
        self.ctrl_w = u._ctrl_cost_weight
        self.exclude_x = bool(u._exclude_current_positions_from_observation)
        if kind != "halfcheetah":
            self.healthy_reward = u._healthy_reward
            self.terminate = bool(u._terminate_when_unhealthy)
            self.z_range = u._healthy_z_range
            self.angle_range = u._healthy_angle_range
            self.state_range = getattr(u, "_healthy_state_range", None)

    def _healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        z, angle = qpos[:, 1], qpos[:, 2]
        ok = (self.z_range[0] < z) & (z < self.z_range[1])
        ok &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        if self.kind == "hopper":  # state_vector()[2:] inside the open range
            lo, hi = self.state_range
            state = np.concatenate([qpos, qvel], axis=1)[:, 2:]
            ok &= np.all((lo < state) & (state < hi), axis=1)
        return ok

    def step(self, actions: np.ndarray, active: np.ndarray):
        idx = np.flatnonzero(active)
        if not len(idx):
            return [], np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
        env_actions = []
        x_before = np.empty(len(idx))
        for j, i in enumerate(idx):
            a = actions[i]
            for w in self.act_wrappers[i]:
                a = w.action(a)
            env_actions.append(a)
            d = self.datas[i]
            x_before[j] = d.qpos[0]
            d.ctrl[:] = a
        if self._pool is None or len(idx) < 2:
            self._physics(idx)
        else:  # contiguous shares, one per thread; list() re-raises a thread's error here
            list(self._pool.map(self._physics, np.array_split(idx, min(self.threads, len(idx)))))
        qpos = np.stack([self.datas[i].qpos for i in idx])
        qvel = np.stack([self.datas[i].qvel for i in idx])
        x_velocity = (qpos[:, 0] - x_before) / self.dt
        forward = self.forward_w * x_velocity
        ctrl_cost = self.ctrl_w * np.sum(np.square(np.stack(env_actions)), axis=1)
        velocity = qvel if self.kind == "halfcheetah" else np.clip(qvel, -10, 10)
        raw_obs = np.concatenate([qpos[:, 1:] if self.exclude_x else qpos, velocity], axis=1)
        if self.kind == "halfcheetah":
            reward = forward - ctrl_cost
            terminated = np.zeros(len(idx), bool)
        else:
            healthy = self._healthy(qpos, qvel)
            reward = (forward + healthy * self.healthy_reward) - ctrl_cost
            terminated = ~healthy & self.terminate
        obs = []
        for j, i in enumerate(idx):
            o = raw_obs[j]
            for w in self.obs_wrappers[i]:
                o = w.observation(o)
            obs.append(o)
        self.elapsed[idx] += 1
        truncated = (self.elapsed[idx] >= self.limit) if self.limit is not None else np.zeros(len(idx), bool)
        return obs, reward, terminated, truncated

    def _physics(self, idx: np.ndarray) -> None:
        """gymnasium's physics calls for one step of the environments ``idx`` (controls already set)."""
        m, fs = self.model, self.frame_skip
        for i in idx:
            d = self.datas[i]
            mujoco.mj_step(m, d, nstep=fs)
            mujoco.mj_rnePostConstraint(m, d)

    def close(self) -> None:
        """Stop the physics threads (the environments stay open)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
