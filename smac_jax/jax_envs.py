"""JAX-native environments with the library's conventions, for an online phase run entirely on
the device (the pipeline's ``online.env = "jax"``).

:func:`make_jax_env` builds a :class:`JaxEnv`: pure ``reset`` and ``step`` functions of explicit
states and keys, which the online loop (:func:`smac_jax.training.online.make_device_online_loop`)
``vmap``s over seeds and runs inside one compiled program, with no host call per step. The
conventions are those of :func:`smac_jax.envs.make_env`: actions in ``[-1, 1]^|A|`` (rescaled to
the environment's bounds), flat float32 observations, optionally standardised with a dataset's
statistics; episodes that end are reset within the same step (Gymnasium's ``SAME_STEP``
autoreset): the observation to act on is then the new episode's first, the transition keeps the
true final observation; ``terminated`` and ``truncated`` (the time limit) are kept apart.

Only environments whose port computes the same transitions as the Gymnasium environment a dataset
names are offered (:data:`SUPPORTED`): a policy trained offline on Gymnasium's data then meets the
same dynamics online (and is evaluated on the Gymnasium environment itself unless the pipeline's
``eval.env = "jax"`` asks for the port). Two backends
(``pip install 'smac_jax[jax-envs]'``):

* `gymnax <https://github.com/RobertTLange/gymnax>`_ (>= 1.0) for Pendulum-v1 (:data:`GYMNAX_PORTS`);
* MuJoCo's own JAX implementation, MJX (``mujoco.mjx``), for the locomotion tasks Hopper-v5,
  Walker2d-v5 and HalfCheetah-v5 (:data:`MJX_PORTS`): the Gymnasium environment's own MuJoCo model
  stepped by MJX with Gymnasium's frame skip, and its observation, reward, health check, reset
  noise and time limit computed as Gymnasium computes them, every constructor argument read from
  the Gymnasium environment itself. MJX computes in float32 where MuJoCo computes in float64, so
  one step agrees to float32 precision; over many steps the two trajectories part, as any two
  floating-point implementations of contact dynamics do.

``tests/test_jax_envs.py`` and ``tests/test_mjx_envs.py`` check the entries step by step against
Gymnasium (Walker2d-v5: ``experiments/check_jax_envs.py``, which checks them all).
"""
from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.envs.registration import EnvSpec

__all__ = ["GYMNAX_PORTS", "JaxEnv", "MJX_PORTS", "MjxState", "SUPPORTED", "check_port", "make_jax_env"]

#: Gymnasium id -> (gymnax id, Gymnasium keyword argument -> gymnax ``EnvParams`` field). A spec
#: keyword argument not listed here is refused rather than ignored. gymnax's other continuous-action
#: task, MountainCarContinuous-v0, is not offered: its step differs from Gymnasium's (it stops the car
#: at the goal, where Gymnasium stops it at the left wall), so its transitions would not be the data's.
GYMNAX_PORTS: dict[str, tuple[str, dict[str, str]]] = {
    "Pendulum-v1": ("Pendulum-v1", {"g": "g"}),
}
#: Gymnasium ids stepped with MJX (any of their constructor arguments). Ant-v5 is not offered: MJX
#: orients the friction pyramid of a near-vertical leg's floor contact differently from MuJoCo, so
#: with Ant's pyramidal cones its steps in contact differ far beyond float32 precision.
MJX_PORTS: tuple[str, ...] = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")
#: Every Gymnasium id with a JAX-native port.
SUPPORTED: tuple[str, ...] = (*GYMNAX_PORTS, *MJX_PORTS)


class JaxEnv(NamedTuple):
    """A JAX-native environment: pure functions of explicit states and keys, written for one
    environment (``vmap`` them for many).

    * ``reset(key) -> (state, obs)``
    * ``step(key, state, action) -> (state, obs, final_obs, reward, terminated, truncated)``:
      ``obs`` is the observation to act on next (a new episode's first where this step ended
      one), ``final_obs`` the one the step reached; ``reward`` is the environment's own (the
      online loop scales it like the dataset's); ``terminated`` / ``truncated`` are bools.

    ``max_episode_steps``: the time limit (-1: none).
    """

    env_id: str
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    reset: Callable[[jax.Array], tuple[Any, jax.Array]]
    step: Callable[[jax.Array, Any, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]]


def _spec_id_and_kwargs(env_id_or_spec: str | EnvSpec) -> tuple[str, dict, int | None]:
    if isinstance(env_id_or_spec, EnvSpec):
        wrappers = [w.name for w in (env_id_or_spec.additional_wrappers or ())]
        if wrappers:  # gym.make(spec) applies them; the port cannot, so it would not be the data's environment
            raise ValueError(f"{env_id_or_spec.id}: the JAX-native port cannot apply the spec's wrapper(s) {wrappers}")
        return env_id_or_spec.id, dict(env_id_or_spec.kwargs or {}), env_id_or_spec.max_episode_steps
    return str(env_id_or_spec), {}, None


def check_port(env_id: str | None = None) -> None:
    """Raise ``ValueError`` (one line) unless ``env_id`` has a verified port and its backend is
    installed (``None``: some backend is): what :func:`make_jax_env` needs, checkable before any
    data exists."""
    if env_id is not None and env_id not in SUPPORTED:
        raise ValueError(f"{env_id} has no JAX-native port here (those with one: {', '.join(SUPPORTED)})")
    if env_id is None:
        errors = []
        for check in (_gymnax, _mjx):
            try:
                check()
                return
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    _gymnax() if env_id in GYMNAX_PORTS else _mjx()


def _gymnax():
    """The gymnax module (>= 1.0), or a one-line ``ValueError``."""
    try:
        import gymnax
    except ImportError:
        raise ValueError("the JAX-native Pendulum needs gymnax: pip install 'smac_jax[jax-envs]'") from None
    env, _ = gymnax.make(next(iter(GYMNAX_PORTS.values()))[0])
    if not hasattr(env, "is_truncated"):  # gymnax < 1.0: one done flag, no final observation
        raise ValueError("the JAX-native environments need gymnax >= 1.0 (its step keeps termination and the time "
                         "limit apart and returns the final observation): pip install 'gymnax>=1.0'")
    return gymnax


def _mjx():
    """The ``mujoco.mjx`` module, or a one-line ``ValueError``. Its import prints that the optional
    NVIDIA Warp backend is absent (a backend this module does not use); that line is kept out of the
    run's output."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            mjx = importlib.import_module("mujoco.mjx")  # (sys.modules first: None there means absent)
    except ImportError:
        raise ValueError("the JAX-native MuJoCo tasks need MJX: pip install 'smac_jax[jax-envs]'") from None
    return mjx


def make_jax_env(env_id_or_spec: str | EnvSpec, *, obs_mean: np.ndarray | None = None,
                 obs_std: np.ndarray | None = None, reward: str = "env", env_kwargs: dict | None = None) -> JaxEnv:
    """The JAX-native counterpart of ``smac_jax.envs.make_env(env_id_or_spec, ...)``.

    ``env_id_or_spec``: a Gymnasium id or ``EnvSpec`` (a dataset's); its keyword arguments
    (e.g. Pendulum's ``g``, Hopper's ``ctrl_cost_weight``) and time limit are carried over,
    ``env_kwargs`` (``gym.make``'s) over them (``max_episode_steps`` included). ``obs_mean`` /
    ``obs_std``: the standardisation ``(obs - mean) / std`` (both or neither). ``reward`` must be
    ``"env"``: the ported environments report no success.

    Raises ``ValueError`` (one line) for an environment without a verified JAX port, a keyword
    argument the port cannot take, a success reward, or the port's backend not installed.
    """
    env_id, kwargs, max_steps = _spec_id_and_kwargs(env_id_or_spec)
    check_port(env_id)
    if reward != "env":
        raise ValueError(f"reward={reward!r}: the JAX-native {env_id} reports no success")
    if (obs_mean is None) != (obs_std is None):
        raise ValueError("make_jax_env: pass obs_mean and obs_std together, or neither")
    if env_id in MJX_PORTS:
        return _make_mjx_env(env_id, env_id_or_spec, env_kwargs or {}, obs_mean, obs_std)
    kwargs.update(env_kwargs or {})
    max_steps = kwargs.pop("max_episode_steps", max_steps)
    kwargs.pop("disable_env_checker", None)  # gym.make's own: the environment is the same either way
    gymnax = _gymnax()
    gx_id, param_names = GYMNAX_PORTS[env_id]
    env, params = gymnax.make(gx_id)
    unknown = sorted(set(kwargs) - set(param_names))
    if unknown:
        raise ValueError(f"{env_id}: the JAX-native port cannot take the environment argument(s) {unknown}")
    for k, v in kwargs.items():  # the ported arguments are numbers
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f"{env_id}: environment argument {k}={v!r} must be a finite number")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"{env_id}: max_episode_steps={max_steps!r} must be a positive integer")
    params = params.replace(**{param_names[k]: v for k, v in kwargs.items()})
    if max_steps is not None:
        params = params.replace(max_steps_in_episode=int(max_steps))
    space = env.action_space(params)
    rescale = _rescaler(space)
    obs_dim = int(np.prod(env.observation_space(params).shape))
    observe = _observer(obs_dim, obs_mean, obs_std)

    def reset(key):
        obs, state = env.reset(key, params)
        return state, observe(obs)

    def step(key, state, action):
        obs, state, rew, terminated, truncated, info = env.step(key, state, rescale(action), params)
        return (state, observe(obs), observe(info["final_observation"]), jnp.asarray(rew, jnp.float32).reshape(()),
                jnp.asarray(terminated, bool).reshape(()), jnp.asarray(truncated, bool).reshape(()))

    return JaxEnv(env_id, obs_dim, int(np.prod(space.shape)), int(params.max_steps_in_episode), reset, step)


def _rescaler(space) -> Callable[[jax.Array], jax.Array]:
    """RescaleAction's map from ``[-1, 1]`` to the Box ``space``'s bounds (the environments clip)."""
    low = jnp.asarray(np.broadcast_to(np.asarray(space.low, np.float32), space.shape))
    high = jnp.asarray(np.broadcast_to(np.asarray(space.high, np.float32), space.shape))
    return lambda action: low + (action + 1.0) * 0.5 * (high - low)


def _observer(obs_dim: int, obs_mean, obs_std) -> Callable[[jax.Array], jax.Array]:
    """Flat float32 observations, standardised with ``(obs_mean, obs_std)`` when given."""
    mean = None if obs_mean is None else jnp.asarray(obs_mean, jnp.float32).reshape(obs_dim)
    std = None if obs_std is None else jnp.asarray(obs_std, jnp.float32).reshape(obs_dim)

    def observe(o):
        o = jnp.asarray(o, jnp.float32).reshape(obs_dim)
        return o if mean is None else (o - mean) / std

    return observe


class MjxState(NamedTuple):
    """An MJX-stepped environment's state: all that carries over from one step to the next in
    MuJoCo's ``MjData`` for these tasks (positions, velocities, and the accelerations the next
    step's constraint solver starts from), and the steps taken in the episode (the time limit)."""

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array
    steps: jax.Array


def _make_mjx_env(env_id: str, env_id_or_spec: str | EnvSpec, env_kwargs: dict, obs_mean, obs_std) -> JaxEnv:
    """Hopper-v5 / Walker2d-v5 / HalfCheetah-v5 stepped with MJX: the model, frame skip, reward
    weights, health ranges, reset noise and time limit read from the Gymnasium environment
    ``gym.make(env_id_or_spec, **env_kwargs)`` builds."""
    import gymnasium as gym

    from smac_jax import vector_mujoco
    from smac_jax.envs import gym_make

    mjx = _mjx()
    try:
        env = gym_make(env_id_or_spec, **env_kwargs)
    except (TypeError, ValueError, gym.error.Error) as e:  # e.g. an argument the environment does not take
        raise ValueError(f"{env_id}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        u = env.unwrapped
        name, kind = env_id, vector_mujoco._kind(u)
        chain = vector_mujoco._wrapper_chain(env)
        if u.render_mode is not None:
            raise ValueError(f"{name}: render_mode={u.render_mode!r}: the JAX-native port does not render")
        if chain is None or chain[0] or chain[1] or kind is None:
            raise ValueError(f"{name}: the JAX-native port reproduces the plain Gymnasium environment only "
                             "(no wrappers)")
        limit = chain[2]
        model = u.model
        if model.opt.noslip_iterations:  # MJX has no noslip solver and would step without it
            raise ValueError(f"{name}: MJX has no noslip solver (the model sets noslip_iterations="
                             f"{model.opt.noslip_iterations})")
        if model.na:
            raise ValueError(f"{name}: a model with actuator states (na={model.na}) is not ported")
        try:
            mx = mjx.put_model(model)
        except NotImplementedError as e:  # a model feature MJX lacks (e.g. from a custom xml_file)
            raise ValueError(f"{name}: MJX cannot step this model ({str(e).splitlines()[0] if str(e) else e!r})") from None
        template = mjx.make_data(mx)

        def number(arg: str, cast=float):  # a constructor argument as a number: a string given for one fails here
            value = getattr(u, "_" + arg)
            try:
                return tuple(map(cast, value)) if isinstance(value, (tuple, list, np.ndarray)) else cast(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}: environment argument {arg}={value!r} is not a number the port can use") from None

        frame_skip, dt = int(u.frame_skip), float(u.dt)
        forward_w, ctrl_w = number("forward_reward_weight"), number("ctrl_cost_weight")
        noise = number("reset_noise_scale")
        exclude_x = bool(u._exclude_current_positions_from_observation)
        if kind != "halfcheetah":
            healthy_reward, terminate = number("healthy_reward"), bool(u._terminate_when_unhealthy)
            z_range, angle_range = number("healthy_z_range"), number("healthy_angle_range")
            state_range = number("healthy_state_range") if kind == "hopper" else None
        init_qpos = jnp.asarray(u.init_qpos, jnp.float32)
        init_qvel = jnp.asarray(u.init_qvel, jnp.float32)
        rescale = _rescaler(u.action_space)
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
    finally:
        env.close()
    observe = _observer(obs_dim, obs_mean, obs_std)
    nq, nv = int(model.nq), int(model.nv)

    def observation(qpos, qvel):  # Gymnasium's _get_obs
        velocity = qvel if kind == "halfcheetah" else jnp.clip(qvel, -10.0, 10.0)
        return observe(jnp.concatenate([qpos[1:] if exclude_x else qpos, velocity]))

    def healthy(qpos, qvel):  # Gymnasium's is_healthy
        z, angle = qpos[1], qpos[2]
        ok = (z_range[0] < z) & (z < z_range[1]) & (angle_range[0] < angle) & (angle < angle_range[1])
        if state_range is not None:  # Hopper: state_vector()[2:] inside the open range
            state = jnp.concatenate([qpos, qvel])[2:]
            ok &= jnp.all((state_range[0] < state) & (state < state_range[1]))
        return ok

    def reset(key):  # Gymnasium's reset_model after mj_resetData (no warm start)
        k_pos, k_vel = jax.random.split(key)
        qpos = init_qpos + jax.random.uniform(k_pos, (nq,), jnp.float32, -noise, noise)
        if kind == "halfcheetah":
            qvel = init_qvel + noise * jax.random.normal(k_vel, (nv,), jnp.float32)
        else:
            qvel = init_qvel + jax.random.uniform(k_vel, (nv,), jnp.float32, -noise, noise)
        return MjxState(qpos, qvel, jnp.zeros(nv, jnp.float32), jnp.int32(0)), observation(qpos, qvel)

    def physics(state, ctrl):  # do_simulation: ctrl set, mj_step frame_skip times
        data = template.replace(qpos=state.qpos, qvel=state.qvel, qacc_warmstart=state.qacc_warmstart, ctrl=ctrl)
        data, _ = jax.lax.scan(lambda d, _: (mjx.step(mx, d), None), data, None, length=frame_skip)
        return data

    def step(key, state, action):
        a = rescale(action)  # MuJoCo clamps the control; the control cost takes it as given
        data = physics(state, a)
        qpos, qvel = data.qpos, data.qvel
        forward = forward_w * ((qpos[0] - state.qpos[0]) / dt)
        ctrl_cost = ctrl_w * jnp.sum(jnp.square(a))
        if kind == "halfcheetah":
            rew, terminated = forward - ctrl_cost, jnp.bool_(False)
        else:
            ok = healthy(qpos, qvel)
            rew, terminated = (forward + ok * healthy_reward) - ctrl_cost, ~ok & terminate
        steps = state.steps + 1
        truncated = steps >= limit if limit is not None else jnp.bool_(False)
        final = observation(qpos, qvel)
        fresh, first = reset(key)
        done = terminated | truncated
        state = jax.tree.map(lambda r, c: jnp.where(done, r, c), fresh, MjxState(qpos, qvel, data.qacc_warmstart, steps))
        return (state, jnp.where(done, first, final), final, jnp.asarray(rew, jnp.float32).reshape(()),
                jnp.asarray(terminated, bool).reshape(()), jnp.asarray(truncated, bool).reshape(()))

    return JaxEnv(name, obs_dim, act_dim, -1 if limit is None else int(limit), reset, step)
