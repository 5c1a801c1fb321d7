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

The dynamics come from `gymnax <https://github.com/RobertTLange/gymnax>`_ (``pip install
'smac_jax[jax-envs]'``). Only environments whose gymnax port computes the same transitions as the
Gymnasium environment a dataset names are offered (:data:`SUPPORTED`): a policy trained offline
on Gymnasium's data then meets the same dynamics online, and is evaluated on the Gymnasium
environment itself. ``tests/test_jax_envs.py`` checks every entry step by step against Gymnasium.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.envs.registration import EnvSpec

__all__ = ["JaxEnv", "SUPPORTED", "check_port", "make_jax_env"]

#: Gymnasium id -> (gymnax id, Gymnasium keyword argument -> gymnax ``EnvParams`` field). A spec
#: keyword argument not listed here is refused rather than ignored. gymnax's other continuous-action
#: task, MountainCarContinuous-v0, is not offered: its step differs from Gymnasium's (it stops the car
#: at the goal, where Gymnasium stops it at the left wall), so its transitions would not be the data's.
SUPPORTED: dict[str, tuple[str, dict[str, str]]] = {
    "Pendulum-v1": ("Pendulum-v1", {"g": "g"}),
}


class JaxEnv(NamedTuple):
    """A JAX-native environment: pure functions of explicit states and keys, written for one
    environment (``vmap`` them for many).

    * ``reset(key) -> (state, obs)``
    * ``step(key, state, action) -> (state, obs, final_obs, reward, terminated, truncated)``:
      ``obs`` is the observation to act on next (a new episode's first where this step ended
      one), ``final_obs`` the one the step reached; ``reward`` is the environment's own (the
      online loop scales it like the dataset's); ``terminated`` / ``truncated`` are bools.
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
            raise ValueError(f"{env_id_or_spec.id}: the JAX-native port cannot apply the spec's wrapper(s) {wrappers}; "
                             "use online.env='gymnasium'")
        return env_id_or_spec.id, dict(env_id_or_spec.kwargs or {}), env_id_or_spec.max_episode_steps
    return str(env_id_or_spec), {}, None


def check_port(env_id: str | None = None) -> None:
    """Raise ``ValueError`` (one line) unless ``env_id`` has a verified port (``None``: any) and
    gymnax (>= 1.0) is installed: what :func:`make_jax_env` needs, checkable before any data exists."""
    if env_id is not None and env_id not in SUPPORTED:
        raise ValueError(f"{env_id} has no JAX-native port here (those with one: {', '.join(SUPPORTED)}); "
                         "use the Gymnasium environment (online.env='gymnasium')")
    try:
        import gymnax
    except ImportError:
        raise ValueError("the JAX-native environments need gymnax: pip install 'smac_jax[jax-envs]'") from None
    env, _ = gymnax.make(SUPPORTED[env_id or next(iter(SUPPORTED))][0])
    if not hasattr(env, "is_truncated"):  # gymnax < 1.0: one done flag, no final observation
        raise ValueError("the JAX-native environments need gymnax >= 1.0 (its step keeps termination and the time "
                         "limit apart and returns the final observation): pip install 'gymnax>=1.0'")


def make_jax_env(env_id_or_spec: str | EnvSpec, *, obs_mean: np.ndarray | None = None,
                 obs_std: np.ndarray | None = None, reward: str = "env", env_kwargs: dict | None = None) -> JaxEnv:
    """The JAX-native counterpart of ``smac_jax.envs.make_env(env_id_or_spec, ...)``.

    ``env_id_or_spec``: a Gymnasium id or ``EnvSpec`` (a dataset's); its keyword arguments
    (e.g. Pendulum's ``g``) and time limit are carried over, ``env_kwargs`` (``gym.make``'s) over
    them (``max_episode_steps`` included). ``obs_mean`` / ``obs_std``: the
    standardisation ``(obs - mean) / std`` (both or neither). ``reward`` must be ``"env"``: the
    gymnax environments report no success.

    Raises ``ValueError`` (one line) for an environment without a verified JAX port, a keyword
    argument the port cannot take, a success reward, or gymnax not installed.
    """
    env_id, kwargs, max_steps = _spec_id_and_kwargs(env_id_or_spec)
    kwargs.update(env_kwargs or {})
    max_steps = kwargs.pop("max_episode_steps", max_steps)
    check_port(env_id)
    if reward != "env":
        raise ValueError(f"reward={reward!r}: the JAX-native {env_id} reports no success; use online.env='gymnasium'")
    if (obs_mean is None) != (obs_std is None):
        raise ValueError("make_jax_env: pass obs_mean and obs_std together, or neither")
    import gymnax

    gx_id, param_names = SUPPORTED[env_id]
    env, params = gymnax.make(gx_id)
    unknown = sorted(set(kwargs) - set(param_names))
    if unknown:
        raise ValueError(f"{env_id}: the JAX-native port cannot take the environment argument(s) {unknown}; "
                         "use online.env='gymnasium'")
    params = params.replace(**{param_names[k]: v for k, v in kwargs.items()})
    if max_steps is not None:
        params = params.replace(max_steps_in_episode=int(max_steps))
    space = env.action_space(params)
    low = jnp.asarray(np.broadcast_to(np.asarray(space.low, np.float32), space.shape))
    high = jnp.asarray(np.broadcast_to(np.asarray(space.high, np.float32), space.shape))
    obs_dim = int(np.prod(env.observation_space(params).shape))
    mean = None if obs_mean is None else jnp.asarray(obs_mean, jnp.float32).reshape(obs_dim)
    std = None if obs_std is None else jnp.asarray(obs_std, jnp.float32).reshape(obs_dim)

    def observe(o):
        o = jnp.asarray(o, jnp.float32).reshape(obs_dim)
        return o if mean is None else (o - mean) / std

    def reset(key):
        obs, state = env.reset(key, params)
        return state, observe(obs)

    def step(key, state, action):
        a = low + (action + 1.0) * 0.5 * (high - low)  # RescaleAction's map (the environments clip)
        obs, state, rew, terminated, truncated, info = env.step(key, state, a, params)
        return (state, observe(obs), observe(info["final_observation"]), jnp.asarray(rew, jnp.float32).reshape(()),
                jnp.asarray(terminated, bool).reshape(()), jnp.asarray(truncated, bool).reshape(()))

    return JaxEnv(env_id, obs_dim, int(np.prod(space.shape)), int(params.max_steps_in_episode), reset, step)
