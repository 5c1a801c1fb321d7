"""Environment construction with the library's conventions (docs/algorithms.md, Conventions).

Every environment the library steps is built by :func:`make_env`, which applies, in order:

1. ``gym.make`` of an id or :class:`gymnasium.envs.registration.EnvSpec` (Minari stores the
   latter with each dataset);
2. action rescaling: a Box action space is mapped to ``[-1, 1]^|A|``
   (:class:`gymnasium.wrappers.RescaleAction`); any other action space is rejected;
3. observation flattening: Dict / Tuple / multi-dimensional observations become one flat
   vector, laid out as :func:`flatten_obs_keys` describes (the same layout
   :func:`gymnasium.spaces.flatten` and :class:`gymnasium.wrappers.FlattenObservation` use);
4. float32 observations;
5. optional standardisation ``(obs - obs_mean) / obs_std`` with fixed statistics (normally a
   dataset's, see :class:`smac_jax.data.dataset.OfflineDataset`);
6. optional binary reward (``reward="success"``, :class:`SuccessReward`): the reward of a step
   is 1 where the environment's ``info["success"]`` is true, else 0 (the "binary" Adroit tasks of
   offline-to-online papers).

The offline loader (:mod:`smac_jax.data.dataset`) flattens dataset observations with the same
layout, so a policy trained offline sees identical inputs online.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

KeyPath = tuple[Any, ...]

#: Reward kinds of :func:`make_env` (and of a run config's ``dataset.reward``): "env", the
#: environment's own reward; "success", 1 on a step whose ``info["success"]`` is true, else 0.
REWARDS = ("env", "success")

__all__ = [
    "REWARDS",
    "SuccessReward",
    "ensure_registered",
    "flatten_obs_keys",
    "flat_obs_dim",
    "make_env",
    "make_vector_env",
    "reset_vector_env",
    "vector_env_seeds",
]


# --------------------------------------------------------------------------------------------
# Observation layout
# --------------------------------------------------------------------------------------------
def flatten_obs_keys(space: spaces.Space) -> list[tuple[KeyPath, int]]:
    """The flat layout of ``space``: one ``(key_path, size)`` entry per leaf, in flat order.

    The flat vector is the concatenation of the leaves in this order, which is the order of
    :func:`gymnasium.spaces.flatten`:

    * ``Dict``: its keys in the space's own order (``space.spaces``; note that
      ``gymnasium.spaces.Dict`` sorts the keys of a plain ``dict`` unless built with
      ``sort_keys=False`` or an ``OrderedDict``), recursively;
    * ``Tuple``: its elements in order, the path component being the integer index;
    * ``Box`` / ``MultiBinary``: row-major (C order) flattening, size ``prod(shape)``;
    * ``Discrete``: a one-hot vector of size ``n``;
    * ``MultiDiscrete``: the concatenated one-hots, size ``sum(nvec)``.

    A non-nested space gives ``[((), size)]``. Example: ``Dict(a=Box(3), b=Dict(c=Box((2, 2))))``
    gives ``[(("a",), 3), (("b", "c"), 4)]``, i.e. ``obs[0:3]`` is ``a`` and ``obs[3:7]`` is ``b/c``.
    """
    layout: list[tuple[KeyPath, int]] = []

    def visit(sub: spaces.Space, path: KeyPath) -> None:
        if isinstance(sub, spaces.Dict):
            for key, child in sub.spaces.items():
                visit(child, path + (key,))
        elif isinstance(sub, spaces.Tuple):
            for index, child in enumerate(sub.spaces):
                visit(child, path + (index,))
        elif isinstance(sub, (spaces.Box, spaces.MultiBinary, spaces.Discrete, spaces.MultiDiscrete)):
            layout.append((path, int(spaces.flatdim(sub))))
        else:
            raise ValueError(
                f"Cannot flatten observation space {sub} at key path {path}: only Box, Discrete, "
                "MultiBinary, MultiDiscrete, Dict and Tuple spaces are supported."
            )

    visit(space, ())
    return layout


def flat_obs_dim(space: spaces.Space) -> int:
    """Length of the flat observation vector of ``space`` (sum of :func:`flatten_obs_keys` sizes)."""
    return sum(size for _, size in flatten_obs_keys(space))


def _env_name(env: gym.Env) -> str:
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


# --------------------------------------------------------------------------------------------
# Single environments
# --------------------------------------------------------------------------------------------
#: MuJoCo warning texts already shown in this process (see :func:`gym_make`).
_MUJOCO_WARNINGS_SHOWN: set[str] = set()


def gym_make(env_id_or_spec: str | EnvSpec, **kwargs) -> gym.Env:
    """``gym.make``, with each distinct warning MuJoCo's model compiler prints while the
    environment is built shown once per process (on stderr) instead of at every build: MuJoCo 4
    warns about HalfCheetah's deprecated ``settotalmass`` attribute each time its model is loaded,
    and an evaluation builds one environment per seed and episode. Any warning handler a user set
    is left to handle them."""
    try:
        import mujoco
    except ImportError:  # no MuJoCo: nothing to quieten
        return gym.make(env_id_or_spec, **kwargs)
    previous = mujoco.get_mju_user_warning()
    if previous is not None:
        return gym.make(env_id_or_spec, **kwargs)

    def once(text: str) -> None:
        if text not in _MUJOCO_WARNINGS_SHOWN:
            _MUJOCO_WARNINGS_SHOWN.add(text)
            print(f"WARNING (MuJoCo, shown once): {text}", file=sys.stderr)

    mujoco.set_mju_user_warning(once)
    try:
        return gym.make(env_id_or_spec, **kwargs)
    finally:
        mujoco.set_mju_user_warning(previous)


def make_env(
    env_id_or_spec: str | EnvSpec,
    *,
    obs_mean: np.ndarray | None = None,
    obs_std: np.ndarray | None = None,
    seed: int | None = None,
    layout_space: spaces.Space | None = None,
    reward: str = "env",
    **kwargs: Any,
) -> gym.Env:
    """Build an environment following the library's conventions.

    Args:
      env_id_or_spec: a registered id (``"Hopper-v5"``) or an ``EnvSpec`` (e.g. a Minari
        dataset's ``env_spec``).
      obs_mean, obs_std: if given (both or neither), observations are standardised as
        ``(obs - obs_mean) / obs_std``. ``obs_std`` is used as is: pass the divisor you want
        (the dataset loader stores ``std + 1e-3``). Shapes must be ``(flat_obs_dim,)``.
      seed: if given, the environment's RNG is seeded by one ``reset(seed=seed)`` and the action
        and observation spaces by ``.seed(seed)``, so later unseeded resets are reproducible.
      layout_space: the observation space whose key order defines the flat layout. Defaults to
        the environment's own observation space. Pass a dataset's stored observation space to
        make online observations match the dataset's layout when the two list the same keys in
        a different order (Minari re-sorts Dict keys when it stores a space).
      reward: one of :data:`REWARDS`: ``"env"`` keeps the environment's reward, ``"success"``
        replaces it by :class:`SuccessReward`'s binary one.
      **kwargs: forwarded to ``gym.make`` (e.g. ``max_episode_steps``, ``render_mode``).

    Returns:
      the wrapped environment: Box action space ``[-1, 1]^|A|``, flat float32 Box observations.

    Raises:
      ValueError: the action space is not a bounded Box, the layout space does not describe the
        environment's observations, the normalisation statistics have the wrong shape, or
        ``reward`` is not one of :data:`REWARDS`.
    """
    if reward not in REWARDS:
        raise ValueError(f"make_env: reward must be one of {REWARDS}, got {reward!r}")
    env = gym_make(env_id_or_spec, **kwargs)
    try:
        env = _wrap_actions(env)
        env = _wrap_observations(env, layout_space, obs_mean, obs_std)
        if reward == "success":
            env = SuccessReward(env)
    except Exception:
        env.close()
        raise
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
        env.observation_space.seed(int(seed))
    return env


def ensure_registered(env_id: str) -> None:
    """Make ``env_id`` known to ``gym.make``: ids Gymnasium lacks (Adroit, FrankaKitchen, AntMaze)
    are registered by Gymnasium-Robotics, imported here when installed. Raises ``ValueError``
    naming the install extra when it is not."""
    if env_id in gym.registry:
        return
    try:
        import gymnasium_robotics
    except ImportError:
        extra = "kitchen" if env_id.startswith("Franka") else "antmaze" if env_id.startswith("AntMaze") else "adroit"
        raise ValueError(f"{env_id} is not a Gymnasium environment; if it is one of Gymnasium-Robotics', "
                         f"pip install 'smac_jax[{extra}]'") from None
    gym.register_envs(gymnasium_robotics)


class SuccessReward(gym.Wrapper):
    """Binary reward: 1.0 on a step whose ``info["success"]`` is true, else 0.0.

    The sparse-reward ("binary") variant of tasks that report success, such as Gymnasium-Robotics'
    Adroit hand tasks (the door-, pen- and relocate-binary tasks of Cal-QL and SMAC). An
    environment whose step info has no ``"success"`` entry is an error, raised at the first step.
    """

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        if "success" not in info:
            raise ValueError(f"Environment {_env_name(self.env)!r} reports no info['success'], so its reward "
                             "cannot be made binary (reward='success'); use reward='env'")
        return obs, float(bool(info["success"])), terminated, truncated, info


def _wrap_actions(env: gym.Env) -> gym.Env:
    space = env.action_space
    name = _env_name(env)
    if not isinstance(space, spaces.Box):
        raise ValueError(
            f"Environment {name!r} has action space {space}; smac_jax supports only continuous "
            "(gymnasium.spaces.Box) action spaces."
        )
    if not np.issubdtype(space.dtype, np.floating):
        raise ValueError(f"Environment {name!r} has a non-float Box action space {space}.")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(
            f"Environment {name!r} has an unbounded action space {space}; actions can only be "
            "rescaled to [-1, 1] from finite bounds."
        )
    if np.any(space.low >= space.high):
        raise ValueError(
            f"Environment {name!r} has an action space {space} with empty or single-point "
            "dimensions (low >= high); they cannot be rescaled to [-1, 1]."
        )
    if np.all(space.low == -1.0) and np.all(space.high == 1.0):
        return env  # already in the convention; avoid a no-op float round trip
    return gym.wrappers.RescaleAction(
        env,
        min_action=np.full(space.shape, -1.0, dtype=space.dtype),
        max_action=np.full(space.shape, 1.0, dtype=space.dtype),
    )


def _same_leaves(a: list[tuple[KeyPath, int]], b: list[tuple[KeyPath, int]]) -> bool:
    return sorted(a, key=repr) == sorted(b, key=repr)


def _wrap_observations(
    env: gym.Env,
    layout_space: spaces.Space | None,
    obs_mean: np.ndarray | None,
    obs_std: np.ndarray | None,
) -> gym.Env:
    name = _env_name(env)
    space = env.observation_space
    own_layout = flatten_obs_keys(space)

    if layout_space is not None and flatten_obs_keys(layout_space) != own_layout:
        wanted = flatten_obs_keys(layout_space)
        if not _same_leaves(wanted, own_layout):
            raise ValueError(
                f"Environment {name!r}: the requested observation layout {wanted} does not match "
                f"the environment's observation space layout {own_layout}."
            )
        # Same leaves in another order: flatten with the layout space's key order. spaces.flatten
        # walks the layout space and indexes the observation by key, so only the order changes.
        flat_space = spaces.flatten_space(layout_space)
        env = gym.wrappers.TransformObservation(
            env, lambda obs, s=layout_space: spaces.flatten(s, obs), flat_space
        )
    elif not (isinstance(space, spaces.Box) and len(space.shape) == 1):
        env = gym.wrappers.FlattenObservation(env)

    if env.observation_space.dtype != np.float32:
        # Like gymnasium.wrappers.DtypeObservation, but the bounds are cast explicitly so that
        # float64 spaces do not trigger gymnasium's "precision lowered" warning.
        box = env.observation_space
        f32_space = spaces.Box(
            box.low.astype(np.float32), box.high.astype(np.float32), dtype=np.float32
        )
        env = gym.wrappers.TransformObservation(
            env, lambda obs: np.asarray(obs, dtype=np.float32), f32_space
        )

    if (obs_mean is None) != (obs_std is None):
        raise ValueError("make_env: pass both obs_mean and obs_std, or neither.")
    if obs_mean is not None:
        dim = env.observation_space.shape
        mean = np.asarray(obs_mean, dtype=np.float32)
        std = np.asarray(obs_std, dtype=np.float32)
        if mean.shape != dim or std.shape != dim:
            raise ValueError(
                f"Environment {name!r}: obs_mean shape {mean.shape} / obs_std shape {std.shape} do "
                f"not match the flat observation shape {dim}."
            )
        if not np.all(std > 0):
            raise ValueError(f"Environment {name!r}: obs_std must be strictly positive.")
        norm_space = spaces.Box(-np.inf, np.inf, shape=dim, dtype=np.float32)
        env = gym.wrappers.TransformObservation(
            env, lambda obs: ((obs - mean) / std).astype(np.float32), norm_space
        )
    return env


# --------------------------------------------------------------------------------------------
# Vector environments
# --------------------------------------------------------------------------------------------
def vector_env_seeds(seeds: int | Sequence[int] | None, num_envs: int) -> list[int] | None:
    """Per-environment seeds: ``None`` stays ``None``, an int ``s`` gives ``[s, s+1, ...]``."""
    if seeds is None:
        return None
    if isinstance(seeds, (int, np.integer)):
        return [int(seeds) + i for i in range(num_envs)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != num_envs:
        raise ValueError(f"Got {len(seeds)} seeds for {num_envs} environments.")
    return seeds


def make_vector_env(
    env_id_or_spec: str | EnvSpec,
    num_envs: int,
    seeds: int | Sequence[int] | None = None,
    **make_env_kwargs: Any,
) -> gym.vector.SyncVectorEnv:
    """A :class:`gymnasium.vector.SyncVectorEnv` of ``num_envs`` :func:`make_env` copies.

    The vector env uses ``AutoresetMode.SAME_STEP``: when a sub-environment's episode ends in a
    ``step``, the returned observation is already the first observation of its next episode, and
    the true last observation is in ``infos["final_obs"][i]`` (valid where
    ``infos["_final_obs"][i]`` is True), together with ``infos["final_info"]``. Store
    ``final_obs`` as the transition's ``next_obs``.

    Args:
      env_id_or_spec: as :func:`make_env`.
      num_envs: number of sub-environments.
      seeds: ``None``, an int (sub-environment ``i`` gets ``seeds + i``) or one seed per
        sub-environment; each sub-environment is built with ``make_env(seed=...)`` and the
        batched action space is seeded with the first seed. Reset with the same seeds with
        :func:`reset_vector_env`.
      **make_env_kwargs: forwarded to :func:`make_env` (``obs_mean``, ``obs_std``,
        ``layout_space``, ``gym.make`` kwargs). ``seed`` is not accepted here.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
    if "seed" in make_env_kwargs:
        raise ValueError("make_vector_env takes per-environment `seeds`, not `seed`.")
    env_seeds = vector_env_seeds(seeds, num_envs)

    def factory(index: int) -> Callable[[], gym.Env]:
        seed = None if env_seeds is None else env_seeds[index]
        return lambda: make_env(env_id_or_spec, seed=seed, **make_env_kwargs)

    envs = gym.vector.SyncVectorEnv(
        [factory(i) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    if env_seeds is not None:
        envs.action_space.seed(env_seeds[0])
    return envs


def reset_vector_env(
    envs: gym.vector.VectorEnv, seeds: int | Sequence[int] | None = None
) -> tuple[np.ndarray, dict]:
    """Reset every sub-environment, sub-environment ``i`` with seed ``seeds[i]``.

    ``seeds`` follows :func:`vector_env_seeds` (an int ``s`` means ``[s, s+1, ...]``); ``None``
    resets without reseeding. Returns ``(obs, infos)`` as ``envs.reset``.
    """
    env_seeds = vector_env_seeds(seeds, envs.num_envs)
    return envs.reset(seed=env_seeds)
