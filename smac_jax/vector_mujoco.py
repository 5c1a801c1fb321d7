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
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import mujoco
import numpy as np

_PASSIVE = ("TimeLimit", "OrderEnforcing", "PassiveEnvChecker")


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


def locomotion_batch(envs: Sequence[gym.Env]) -> "LocomotionBatch | None":
    """A :class:`LocomotionBatch` over ``envs`` (all built the same way and just reset), or
    ``None`` when they are not a supported task or carry a wrapper it cannot reproduce."""
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
    return LocomotionBatch(envs, kind, chains)


class LocomotionBatch:
    """Lockstep stepping of supported MuJoCo locomotion environments (see the module docstring).

    ``step(actions, active)`` steps the environments where ``active`` is true with their rows of
    ``actions`` (the actions the caller would pass to ``env.step``) and returns
    ``(obs, reward, terminated, truncated)`` for those rows, in order.
    """

    def __init__(self, envs: Sequence[gym.Env], kind: str, chains):
        u = envs[0].unwrapped
        self.kind = kind
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
        m, fs = self.model, self.frame_skip
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
            mujoco.mj_step(m, d, nstep=fs)
            mujoco.mj_rnePostConstraint(m, d)
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
