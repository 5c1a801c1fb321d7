"""D4RL's own HDF5 files (e.g. ``~/.d4rl/datasets/hopper_medium_replay-v2.hdf5``) imported as local
Minari datasets, so that every part of the library reads them like any other dataset.

A D4RL file holds one row per transition in flat arrays: ``observations``, ``actions``,
``rewards``, ``terminals``, ``timeouts`` and, in most files, ``next_observations``; Adroit files
also hold ``infos/goal_achieved``. :func:`import_d4rl_file` reads and checks them, cuts the rows
into episodes where ``terminals`` or ``timeouts`` is set, and writes a Minari dataset whose
environment is the maintained Gymnasium equivalent of D4RL's (:data:`D4RL_ENVS`) and whose
reference scores are D4RL's own (:data:`D4RL_REFERENCE_SCORES`), so normalised scores are the
D4RL scores papers report.

Episodes (docs/algorithms.md, "D4RL files"):

* with ``next_observations``, every row is a transition; an episode's last observation is its
  last row's next observation; a row whose next observation is not the following row's
  observation also ends an episode (truncated), flagged or not, so that every stored transition
  is the file's own;
* without them, a row's next observation is the following row's observation, so the last row of
  an episode that ended by a time limit has none and is dropped (as D4RL's own
  ``qlearning_dataset`` does); an episode that ended by termination keeps its last row, whose
  next observation (never bootstrapped from) is set to its own observation;
* rows after the last ``terminals`` / ``timeouts`` flag form a final episode marked truncated;
* ``infos/goal_achieved``, where present, is stored as each step's ``success`` info, so
  ``dataset.reward = "success"`` (the binary Adroit tasks) works on the imported data.

The environments differ from the ones that recorded the data (D4RL used mujoco-py and gym's v2 /
v0 tasks): same observation and action layouts, and for the locomotion tasks the same reward
terms, but not the same simulator build.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import os
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from smac_jax.envs import ensure_registered, gym_make
from smac_jax.errors import DatasetError

__all__ = ["D4RL_ENVS", "D4RL_REFERENCE_SCORES", "d4rl_dataset_name", "d4rl_files", "import_d4rl_file",
           "read_d4rl_file"]

#: D4RL environment name -> (Gymnasium id, ``gym.make`` keyword arguments, episode time limit).
D4RL_ENVS: dict[str, tuple[str, dict, int]] = {
    "hopper": ("Hopper-v5", {}, 1000),
    "walker2d": ("Walker2d-v5", {}, 1000),
    "halfcheetah": ("HalfCheetah-v5", {}, 1000),
    "ant": ("Ant-v5", {"include_cfrc_ext_in_observation": False}, 1000),  # D4RL's 27-dim observation
    "door": ("AdroitHandDoor-v1", {}, 200),
    "pen": ("AdroitHandPen-v1", {}, 100),
    "relocate": ("AdroitHandRelocate-v1", {}, 200),
    "hammer": ("AdroitHandHammer-v1", {}, 200),
}

#: D4RL's reference returns per environment (``d4rl/infos.py``; the same for every dataset of an
#: environment): (random policy, expert policy). Normalised score = 100 (R - min) / (max - min).
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "halfcheetah": (-280.178953, 12135.0),
    "ant": (-325.6, 3879.7),
    "door": (-56.512833, 2880.5693087298737),
    "pen": (96.262799, 3076.8331017826877),
    "relocate": (-6.425911, 4233.877797728884),
    "hammer": (-274.856578, 12794.134825156867),
    "kitchen": (0.0, 4.0),  # one point per completed sub-task
    "antmaze": (0.0, 1.0),  # D4RL's evaluation env ends the episode at the goal: the return is success
}

_REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
_PER_ROW = ("rewards", "terminals", "timeouts", "goal_achieved")  # one value per row: (N,) or (N, 1)
_FLAGS = ("terminals", "timeouts", "goal_achieved")  # 0 / 1


def d4rl_dataset_name(path: str) -> tuple[str, str, str]:
    """(environment, dataset, version) from a D4RL file name, e.g. ``hopper_medium_replay-v2.hdf5``
    or ``door-cloned-v1.hdf5`` -> ``("hopper", "medium-replay", "v2")``, ``("door", "cloned", "v1")``."""
    stem = os.path.basename(path)
    stem = stem[: -len(".hdf5")] if stem.endswith(".hdf5") else stem
    m = re.fullmatch(r"([a-z0-9]+)[-_]([a-z0-9_-]+?)-(v\d+)", stem.lower())
    if m is None:
        raise DatasetError(f"{path}: not a D4RL file name (<env>_<dataset>-v<N>.hdf5, e.g. hopper_medium_replay-v2.hdf5); "
                           "pass the environment with --env and the Minari id with --dataset_id")
    return m.group(1), m.group(2).replace("_", "-"), m.group(3)


def d4rl_files(patterns: list[str]) -> list[str]:
    """The files that ``patterns`` name: paths or glob patterns (``~`` expanded), e.g.
    ``~/.d4rl/datasets/*.hdf5``; each pattern must match at least one file."""
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matched:
            raise DatasetError(f"{pattern}: no such file")
        files += [f for f in matched if f not in files]
    return files


def read_d4rl_file(path: str) -> dict[str, np.ndarray]:
    """The arrays of a D4RL HDF5 file that the import uses, checked: present, one row per
    transition, finite. ``infos/goal_achieved`` is returned as ``goal_achieved`` when present."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot be read as an HDF5 file ({str(e).splitlines()[0][:160]})") from None
    with f:
        missing = [k for k in _REQUIRED if k not in f]
        if missing:
            raise DatasetError(f"{path}: not a D4RL dataset file: no {', '.join(missing)} "
                               f"(it has {', '.join(sorted(f.keys()))})")
        data = {k: np.asarray(f[k][()]) for k in _REQUIRED}
        if "next_observations" in f:
            data["next_observations"] = np.asarray(f["next_observations"][()])
        if "infos" in f and "goal_achieved" in f["infos"]:
            data["goal_achieved"] = np.asarray(f["infos"]["goal_achieved"][()])
    n = data["observations"].shape[0] if data["observations"].ndim else 0
    for k, v in data.items():
        if v.ndim == 0 or v.shape[0] != n:
            raise DatasetError(f"{path}: {k} has {v.shape[0] if v.ndim else 0} rows, observations {n}")
        if v.dtype.kind not in "biuf":
            raise DatasetError(f"{path}: {k} has dtype {v.dtype}; numbers are expected")
        if k in _PER_ROW and v.shape[1:] not in ((), (1,)):
            raise DatasetError(f"{path}: {k} has shape {v.shape}: one value per row expected, shape ({n},)")
        if k in _FLAGS and v.dtype.kind != "b" and not np.isin(v, (0, 1)).all():
            row = int(np.flatnonzero(~np.isin(v.reshape(n), (0, 1)))[0])
            raise DatasetError(f"{path}: {k} holds {v.reshape(n)[row].item():g} at row {row}: flags must be 0 or 1")
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            row = int(np.argwhere(~np.isfinite(v.reshape(n, -1)).all(axis=1))[0, 0])
            raise DatasetError(f"{path}: {k} is not finite at row {row}")
    if n == 0:
        raise DatasetError(f"{path}: the file holds no transitions")
    return data


def _episodes(data: dict[str, np.ndarray]) -> list[Any]:
    """Minari episode buffers from D4RL's flat rows (module docstring)."""
    from minari.data_collector import EpisodeBuffer

    obs, acts = data["observations"].astype(np.float32), data["actions"].astype(np.float32)
    rew = data["rewards"].astype(np.float64).reshape(-1)
    term, tout = data["terminals"].astype(bool).reshape(-1), data["timeouts"].astype(bool).reshape(-1)
    nxt = data.get("next_observations")
    goal = data.get("goal_achieved")
    n = obs.shape[0]
    flags = term | tout
    if nxt is not None and n > 1:
        # a row whose next observation is not the following row's observation ends its episode
        # even where the file flags nothing (a reset the file does not mark): truncated there
        nxt32 = nxt.astype(np.float32)  # compared as stored (observations are written as float32)
        follows = np.all(nxt32[:-1].reshape(n - 1, -1) == obs[1:].reshape(n - 1, -1), axis=1)
        flags = flags | np.r_[~follows, False]
    ends = np.flatnonzero(flags)
    bounds = [(s, e) for s, e in zip(np.r_[0, ends[:-1] + 1], ends)] if ends.size else []
    last = ends[-1] + 1 if ends.size else 0
    if last < n:
        bounds.append((last, n - 1))  # rows after the last flag: a final, truncated episode
    buffers = []
    for s, e in bounds:
        ended_by_terminal = bool(term[e])
        if nxt is not None:
            stop, final_obs = e + 1, nxt[e]
        elif ended_by_terminal:
            stop, final_obs = e + 1, obs[e]  # never bootstrapped from
        else:
            stop, final_obs = e, obs[e]  # the time-limited last row has no next observation: dropped
        if stop <= s:
            continue
        steps = stop - s
        truncations = np.zeros(steps, bool)
        terminations = term[s:stop].copy()
        if not terminations[-1]:
            truncations[-1] = True
        infos = None
        if goal is not None:
            infos = {"success": np.r_[False, goal[s:stop].astype(bool).reshape(-1)]}  # the reset's info first
        buffers.append(EpisodeBuffer(
            id=len(buffers), observations=np.concatenate([obs[s:stop], final_obs[None].astype(np.float32)]),
            actions=acts[s:stop], rewards=list(rew[s:stop]), terminations=list(terminations),
            truncations=list(truncations), infos=infos))
    return buffers


def _env_spec(env_id: str, kwargs: dict, max_steps: int | None):
    try:
        ensure_registered(env_id)
        spec = gym.spec(env_id)
    except (ValueError, gym.error.Error) as e:
        raise DatasetError(f"environment {env_id!r}: {e}") from None
    return dataclasses.replace(spec, kwargs={**spec.kwargs, **kwargs},
                               max_episode_steps=max_steps or spec.max_episode_steps)


def import_d4rl_file(path: str, dataset_id: str | None = None, env_id: str | None = None,
                     ref_scores: tuple[float, float] | None = None, overwrite: bool = False) -> str:
    """Write the D4RL file at ``path`` as the local Minari dataset ``dataset_id`` (default
    ``d4rl/<env>/<dataset>-<version>``, from the file name) and return its id.

    ``env_id`` overrides the Gymnasium environment (default from :data:`D4RL_ENVS`);
    ``ref_scores`` the reference returns (default D4RL's for the environment). A dataset of that
    id that is already local is an error unless ``overwrite``.
    """
    from smac_jax.data.dataset import check_dataset_id, list_local_datasets, validate_transitions

    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    parsed = None
    try:
        parsed = d4rl_dataset_name(path)
    except DatasetError:
        if dataset_id is None or env_id is None:
            raise
    env_name = parsed[0] if parsed else None
    if env_id is not None:
        gym_id, kwargs, max_steps = env_id, {}, None
    elif env_name in D4RL_ENVS:
        gym_id, kwargs, max_steps = D4RL_ENVS[env_name]
    else:
        raise DatasetError(f"{path}: no Gymnasium environment known for D4RL's {env_name!r} "
                           f"(known: {', '.join(D4RL_ENVS)}); pass one with --env")
    dataset_id = dataset_id or f"d4rl/{parsed[0]}/{parsed[1]}-{parsed[2]}"
    check_dataset_id(dataset_id, "--dataset_id")
    if ref_scores is None:
        ref_scores = D4RL_REFERENCE_SCORES.get(env_name)
    exists = dataset_id in list_local_datasets()
    if exists and not overwrite:
        raise DatasetError(f"{dataset_id} is already a local dataset; pass --overwrite to replace it")
    data = read_d4rl_file(path)
    spec = _env_spec(gym_id, kwargs, max_steps)
    env = gym_make(spec)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    for what, space in (("observations", obs_space), ("actions", act_space)):
        if not isinstance(space, gym.spaces.Box):
            raise DatasetError(f"{path}: {gym_id} has {type(space).__name__} {what}, and D4RL's flat arrays "
                               f"import only into an environment with Box {what}"
                               + (" (AntMaze: use Minari's D4RL/antmaze datasets, the d4rl-antmaze-* tasks)"
                                  if what == "observations" else ""))
    obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
    if data["observations"].shape[1:] != (obs_dim,) or data["actions"].shape[1:] != (act_dim,):
        raise DatasetError(f"{path}: observations {data['observations'].shape[1:]} / actions "
                           f"{data['actions'].shape[1:]} do not fit {gym_id} ({obs_dim} / {act_dim})")
    # the checks loading will make (action bounds), made before anything local is replaced
    validate_transitions(obs=data["observations"], actions=data["actions"], rewards=data["rewards"].reshape(-1),
                         observation_space=obs_space, action_space=act_space, source=path)
    buffers = _episodes(data)
    if not buffers:
        raise DatasetError(f"{path}: no episode with a transition")
    import minari

    if exists:  # replaced only once the new data has been read and checked
        with contextlib.redirect_stdout(io.StringIO()):  # Minari prints "Dataset ... deleted!"
            minari.delete_dataset(dataset_id)
    lo, hi = ref_scores if ref_scores is not None else (None, None)
    name = os.path.basename(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari's advice on a missing author e-mail
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env=spec, eval_env=spec, algorithm_name=f"D4RL ({name})",
            observation_space=obs_space, action_space=act_space, ref_min_score=lo, ref_max_score=hi,
            author="D4RL (Fu et al., 2020), imported by smac_jax",
            code_permalink="https://github.com/Farama-Foundation/D4RL",
            description=f"D4RL's {name} imported by smac_jax: {sum(len(b.rewards) for b in buffers)} transitions "
                        f"in {len(buffers)} episodes, environment {gym_id}.",
            data_format="hdf5")
    return dataset_id
