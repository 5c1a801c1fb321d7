"""Loading local Minari datasets into flat :class:`~smac_jax.types.Transitions`.

``load_dataset(id)`` reads every episode of a *local* Minari dataset (nothing is downloaded),
flattens it into one row per transition and adds the per-transition quantities the learners
need (return-to-go, Monte-Carlo return, episode return). Conventions (docs/algorithms.md, Conventions):

* observations are flattened exactly like the online environments built by
  :func:`smac_jax.envs.make_env` (layout: :func:`smac_jax.envs.flatten_obs_keys` of the
  dataset's stored observation space), optionally standardised with the dataset's mean and
  ``std + 1e-3``;
* actions are mapped linearly from the dataset's Box action space to ``[-1, 1]``;
* rewards become ``reward * reward_scale + reward_bias``; with ``reward="success"`` the raw
  reward of a step is first replaced by the step's stored ``infos["success"]`` (1 or 0), the
  binary reward of the sparse Adroit tasks (:func:`success_rewards`).

Bad data fails early with a :class:`DatasetError` that says what is wrong and where
(:func:`validate_transitions`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from smac_jax import envs as envs_lib
from smac_jax.data.replay import top_n_transitions
from smac_jax.envs import KeyPath, flat_obs_dim, flatten_obs_keys
from smac_jax.types import Transitions

__all__ = [
    "DatasetError",
    "OfflineDataset",
    "OBS_STD_EPS",
    "discounted_returns",
    "flatten_observations",
    "list_local_datasets",
    "load_dataset",
    "rescale_actions",
    "returns_to_go",
    "success_rewards",
    "validate_transitions",
]

#: Added to the dataset's observation std before dividing (docs/algorithms.md, Conventions).
OBS_STD_EPS = 1e-3


from smac_jax.errors import DatasetError  # noqa: E402,F401  (re-exported)


# --------------------------------------------------------------------------------------------
# Dataset container
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class OfflineDataset:
    """A loaded offline dataset and what is needed to act in its environment.

    Attributes:
      transitions: every transition of the dataset as numpy arrays (float32; ``episode``
        int32), rows grouped by episode in dataset order. See :class:`~smac_jax.types.Transitions`.
      obs_mean, obs_std: (obs_dim,) float32 standardisation statistics already applied to
        ``transitions.obs`` / ``next_obs``; ``obs_std`` is the divisor (dataset std + 1e-3).
        Zeros / ones when the dataset was loaded without ``normalize_obs``.
      dataset_id: the Minari id.
      env_spec: the ``gymnasium`` ``EnvSpec`` Minari stored (None if the dataset has none).
      ref_min_score, ref_max_score: Minari's reference returns for normalised scores (None if
        the dataset does not provide them).
      n_episodes: number of episodes (``transitions.episode`` ranges over ``0..n_episodes-1``,
        the position of the episode in the dataset; episodes with no steps are skipped).
      obs_layout: :func:`smac_jax.envs.flatten_obs_keys` of the dataset's observation space:
        which slice of the flat observation is which key.
      action_low, action_high: bounds of the dataset's (original) Box action space.
      observation_space, action_space: the dataset's stored (original) spaces.
      eval_env_spec: Minari's evaluation ``EnvSpec`` if the dataset has one, else None.
      normalize_obs, reward_scale, reward_bias, gamma, reward: the loading options used.
      env_kwargs: keyword arguments every environment the dataset builds is made with
        (:meth:`make_env`; e.g. AntMaze's ``continuing_task=False``, which ends an episode at the
        goal as D4RL's evaluation does).
    """

    transitions: Transitions
    obs_mean: np.ndarray
    obs_std: np.ndarray
    dataset_id: str
    env_spec: Any
    ref_min_score: float | None
    ref_max_score: float | None
    n_episodes: int
    obs_layout: list[tuple[KeyPath, int]]
    action_low: np.ndarray
    action_high: np.ndarray
    observation_space: spaces.Space | None = None
    action_space: spaces.Space | None = None
    eval_env_spec: Any = None
    normalize_obs: bool = False
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    gamma: float = 0.99
    reward: str = "env"
    env_kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def obs_dim(self) -> int:
        return int(self.transitions.obs.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.transitions.action.shape[1])

    def normalized_score(self, returns: Any) -> np.ndarray | float:
        """D4RL-style normalised score ``100 (R - ref_min) / (ref_max - ref_min)``.

        ``returns`` are raw (unscaled) undiscounted episode returns, a scalar or an array. A dataset
        loaded with ``reward="success"`` scores an episode 100 if it succeeded (a return of the
        success reward above 0) and 0 otherwise, so that the mean is the success rate in percent,
        as the pipeline's evaluations score the binary tasks.
        """
        if self.reward == "success":
            score = 100.0 * (np.asarray(returns, np.float64) > 0)
            return float(score) if score.ndim == 0 else score
        if self.ref_min_score is None or self.ref_max_score is None:
            raise DatasetError(
                f"Dataset {self.dataset_id!r} has no reference scores (ref_min_score="
                f"{self.ref_min_score}, ref_max_score={self.ref_max_score}) so normalised scores "
                "cannot be computed; give the reference scores in the config instead."
            )
        span = self.ref_max_score - self.ref_min_score
        if span == 0:
            raise DatasetError(
                f"Dataset {self.dataset_id!r} has ref_min_score == ref_max_score == "
                f"{self.ref_min_score}; normalised scores are undefined."
            )
        score = normalized_score(returns, self.ref_min_score, self.ref_max_score)
        return float(score) if score.ndim == 0 else score

    def make_env(self, *, eval_env: bool = False, **kwargs: Any) -> gym.Env:
        """The dataset's environment, wrapped like the data (:func:`smac_jax.envs.make_env`).

        Observations use the dataset's flat layout and, if the dataset was loaded with
        ``normalize_obs``, its standardisation. ``eval_env=True`` uses Minari's evaluation
        spec when the dataset has one. ``kwargs`` go to :func:`smac_jax.envs.make_env`
        (``seed`` and ``gym.make`` options).
        """
        return envs_lib.make_env(self._spec(eval_env), **self._env_kwargs(kwargs))

    def _spec(self, eval_env: bool):
        """The stored spec :meth:`make_env` builds from: Minari's evaluation spec with ``eval_env``
        where the dataset has one, else its own."""
        spec = self.eval_env_spec if (eval_env and self.eval_env_spec is not None) else self.env_spec
        if spec is None:
            raise DatasetError(
                f"Dataset {self.dataset_id!r} stores no environment spec, so its environment "
                "cannot be recreated; build it with smac_jax.envs.make_env(env_id, ...) instead."
            )
        return spec

    def _env_kwargs(self, kwargs: dict) -> dict:
        """``kwargs`` over the dataset's ``env_kwargs``, with its layout, reward and standardisation."""
        kwargs = {**self.env_kwargs, **kwargs}
        kwargs.setdefault("layout_space", self.observation_space)
        kwargs.setdefault("reward", self.reward)
        if self.normalize_obs:
            kwargs.setdefault("obs_mean", self.obs_mean)
            kwargs.setdefault("obs_std", self.obs_std)
        return kwargs

    def make_jax_env(self, *, eval_env: bool = False):
        """The JAX-native counterpart of :meth:`make_env` (:func:`smac_jax.jax_envs.make_jax_env`):
        the same environment, keyword arguments and observation standardisation, as pure functions
        for the device. Raises ``ValueError`` where there is no verified port."""
        from smac_jax import jax_envs

        stats = dict(obs_mean=self.obs_mean, obs_std=self.obs_std) if self.normalize_obs else {}
        return jax_envs.make_jax_env(self._spec(eval_env), reward=self.reward, env_kwargs=self.env_kwargs, **stats)

    def make_vector_env(self, num_envs: int, seeds: Any = None, *, eval_env: bool = False, **kwargs: Any):
        """:func:`smac_jax.envs.make_vector_env` of this dataset's environment (see :meth:`make_env`)."""
        return envs_lib.make_vector_env(self._spec(eval_env), num_envs, seeds, **self._env_kwargs(kwargs))

    def episode_returns(self) -> np.ndarray:
        """(n_episodes,) float64 raw undiscounted return of each episode, by episode index."""
        t = self.transitions
        episode = np.asarray(t.episode)
        # Every transition of an episode carries the same traj_return; pick the first one.
        first = np.ones(episode.shape[0], dtype=bool)
        first[1:] = episode[1:] != episode[:-1]
        returns = np.zeros(self.n_episodes, dtype=np.float64)
        returns[episode[first]] = np.asarray(t.traj_return)[first]
        return returns

    def describe(self) -> str:
        """One line on what the data holds: transitions, episodes and the episodes' normalised score
        (mean, best; raw returns where the dataset has no reference scores)."""
        rets = self.episode_returns()
        head = f"{self.transitions.obs.shape[0]:,} transitions, {self.n_episodes:,} episodes"
        if self.reward == "success":
            return f"{head}, {np.mean(rets > 0) * 100:.1f}% of them successful"
        if self.ref_min_score is None or self.ref_max_score is None:
            return f"{head}, episode return {rets.mean():.1f} on average, best {rets.max():.1f}"
        scores = normalized_score(rets, self.ref_min_score, self.ref_max_score)
        return f"{head}, episodes scoring {scores.mean():.1f} on average, best {scores.max():.1f}"

    def fingerprint(self) -> str:
        """A digest of the loaded transitions (every field's shape, dtype and bytes, BLAKE2b): two
        loads of the same data give the same string, a regenerated or edited dataset another. A run
        records it in its workdir, and a resume on other data stops instead of continuing on it."""
        h = hashlib.blake2b(digest_size=16)
        for field in dataclasses.fields(self.transitions):
            a = np.ascontiguousarray(np.asarray(getattr(self.transitions, field.name)))
            h.update(f"{field.name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def top_n_episodes(self, n: int) -> Transitions:
        """The transitions of the ``n`` highest-return episodes (ACA's ``top_n`` replay init).

        Ties are broken by episode index (earlier first); rows keep dataset order. ``n = 0``
        gives an empty ``Transitions``; ``n >= n_episodes`` gives every transition.
        """
        if n < 0:
            raise ValueError(f"top_n_episodes: n must be >= 0, got {n}.")
        return top_n_transitions(self.transitions, n)


def normalized_score(returns: Any, ref_min: float, ref_max: float) -> np.ndarray:
    """D4RL's normalised score ``100 (R - ref_min) / (ref_max - ref_min)`` (float64)."""
    if ref_min is None or ref_max is None or ref_max == ref_min:
        raise DatasetError(f"normalised score needs distinct ref_min_score/ref_max_score, got {ref_min}, {ref_max}")
    return 100.0 * (np.asarray(returns, np.float64) - ref_min) / (ref_max - ref_min)


# --------------------------------------------------------------------------------------------
# Array helpers (public: usable on online data as well)
# --------------------------------------------------------------------------------------------
def flatten_observations(space: spaces.Space, obs: Any, *, where: str = "observations") -> np.ndarray:
    """Flatten a batch of observations ``(T, ...)`` of ``space`` into ``(T, flat_obs_dim)`` float32.

    Row ``t`` equals ``gymnasium.spaces.flatten(space, obs_t)`` (layout:
    :func:`smac_jax.envs.flatten_obs_keys`). ``obs`` is a dict / tuple of arrays for Dict /
    Tuple spaces, as Minari returns them. Raises :class:`DatasetError` naming the key path and
    both shapes when a leaf does not match its space; ``where`` prefixes the message.
    """
    parts: list[np.ndarray] = []
    lengths: set[int] = set()

    def visit(sub: spaces.Space, x: Any, path: KeyPath) -> None:
        label = where + "".join(f"[{k!r}]" for k in path)
        if isinstance(sub, spaces.Dict):
            if not isinstance(x, dict):
                raise DatasetError(f"{label}: expected a dict for {sub}, got {type(x).__name__}.")
            missing = [k for k in sub.spaces if k not in x]
            if missing:
                raise DatasetError(
                    f"{label}: keys {missing} of the observation space are missing from the data "
                    f"(data keys: {sorted(x)})."
                )
            for key, child in sub.spaces.items():
                visit(child, x[key], path + (key,))
            return
        if isinstance(sub, spaces.Tuple):
            if not isinstance(x, (tuple, list)) or len(x) != len(sub.spaces):
                raise DatasetError(f"{label}: expected a tuple of {len(sub.spaces)} arrays for {sub}.")
            for index, child in enumerate(sub.spaces):
                visit(child, x[index], path + (index,))
            return

        x = np.asarray(x)
        if x.ndim == 0:
            raise DatasetError(f"{label}: expected a batch of observations, got a scalar.")
        lengths.add(x.shape[0])
        if isinstance(sub, (spaces.Box, spaces.MultiBinary)):
            expected = tuple(sub.shape)
            if tuple(x.shape[1:]) != expected:
                raise DatasetError(
                    f"{label}: observation shape {tuple(x.shape[1:])} (array {tuple(x.shape)}) does "
                    f"not match the environment's observation space shape {expected} ({sub})."
                )
            parts.append(x.reshape(x.shape[0], -1).astype(np.float32, copy=False))
        elif isinstance(sub, spaces.Discrete):
            if x.ndim != 1:
                raise DatasetError(
                    f"{label}: observation shape {tuple(x.shape[1:])} does not match the "
                    f"environment's observation space shape () ({sub})."
                )
            parts.append(_one_hot(x.astype(np.int64) - int(sub.start), int(sub.n), label))
        elif isinstance(sub, spaces.MultiDiscrete):
            if tuple(x.shape[1:]) != tuple(sub.shape):
                raise DatasetError(
                    f"{label}: observation shape {tuple(x.shape[1:])} does not match the "
                    f"environment's observation space shape {tuple(sub.shape)} ({sub})."
                )
            values = (x - sub.start).reshape(x.shape[0], -1).astype(np.int64)
            sizes = sub.nvec.reshape(-1).astype(np.int64)
            parts.extend(_one_hot(values[:, j], int(sizes[j]), label) for j in range(sizes.size))
        else:
            raise DatasetError(f"{label}: unsupported observation space {sub}.")

    visit(space, obs, ())
    if len(lengths) > 1:
        raise DatasetError(f"{where}: observation leaves have different lengths {sorted(lengths)}.")
    if not parts:
        raise DatasetError(f"{where}: observation space {space} has no leaves.")
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def _one_hot(index: np.ndarray, n: int, label: str) -> np.ndarray:
    if index.size and (index.min() < 0 or index.max() >= n):
        raise DatasetError(f"{label}: discrete observation outside [0, {n}).")
    out = np.zeros((index.shape[0], n), dtype=np.float32)
    out[np.arange(index.shape[0]), index] = 1.0
    return out


def rescale_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map actions linearly from ``[low, high]`` to ``[-1, 1]`` (clipped), as float32.

    The inverse of :class:`gymnasium.wrappers.RescaleAction` with ``min_action=-1, max_action=1``.
    Dimensions with ``low == high`` map to 0.
    """
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    span = high - low
    safe = np.where(span > 0, span, 1.0)
    scaled = 2.0 * (np.asarray(actions, dtype=np.float64) - low) / safe - 1.0
    scaled = np.where(span > 0, scaled, 0.0)
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)


def _episode_bounds(episode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) row of each run of equal consecutive ``episode`` values."""
    n = episode.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(episode[1:] != episode[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    return starts, ends


def returns_to_go(rewards: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Undiscounted return-to-go per row (this step included), within runs of equal ``episode``.

    Fully vectorised: ``rtg_t = (sum of the episode's rewards) - (rewards before t)``, in float64.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    starts, ends = _episode_bounds(np.asarray(episode))
    csum = np.concatenate([[0.0], np.cumsum(rewards)])
    lengths = ends - starts
    episode_end_sum = np.repeat(csum[ends], lengths)
    return episode_end_sum - csum[:-1]


def discounted_returns(rewards: np.ndarray, episode: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted Monte-Carlo return per row, ``G_t = r_t + gamma G_{t+1}``, ``G = 0`` after the
    episode's last row (no bootstrap, also at truncation). Runs of equal ``episode`` are episodes.

    One ``scipy.signal.lfilter`` call per episode on the reversed rewards (exact, float64).
    """
    from scipy.signal import lfilter  # imported here: it costs a launch script most of a second

    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    starts, ends = _episode_bounds(np.asarray(episode))
    den = np.array([1.0, -float(gamma)])
    for start, end in zip(starts.tolist(), ends.tolist()):
        out[start:end] = lfilter([1.0], den, rewards[start:end][::-1])[::-1]
    return out


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _location(row: int, episode: np.ndarray | None, step: np.ndarray | None) -> str:
    parts = []
    if episode is not None:
        parts.append(f"episode {int(episode[row])}")
    if step is not None:
        parts.append(f"step {int(step[row])}")
    parts.append(f"row {row}")
    return ", ".join(parts)


def validate_transitions(
    *,
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_obs: np.ndarray | None = None,
    episode: np.ndarray | None = None,
    step: np.ndarray | None = None,
    observation_space: spaces.Space | None = None,
    action_space: spaces.Box | None = None,
    action_tolerance: float = 1e-3,
    source: str = "transitions",
) -> None:
    """Check flat transition arrays; raise :class:`DatasetError` saying what is wrong and where.

    Checks, in order: row counts agree; ``obs`` / ``next_obs`` rows have the flat shape of
    ``observation_space`` and ``actions`` rows the shape of ``action_space`` (if given);
    no NaN / inf in ``obs``, ``next_obs``, ``actions``, ``rewards`` (message: field, count,
    first episode / step); actions inside ``[low - action_tolerance, high + action_tolerance]``
    of ``action_space`` (message: count, worst value, its dimension, bounds and location).

    Args:
      obs, next_obs: (N, obs_dim) flattened observations (raw, before standardisation).
      actions: (N, act_dim) actions in the units of ``action_space`` (before rescaling).
      rewards: (N,) raw rewards.
      episode, step: (N,) optional episode index and step-within-episode, used in messages.
      observation_space: the environment's observation space (flattened size is compared).
      action_space: the dataset's Box action space (shape and bounds are checked).
      action_tolerance: allowed excess beyond the bounds, in the action space's units.
      source: name used at the start of messages (e.g. the dataset id).
    """
    obs = np.asarray(obs)
    actions = np.asarray(actions)
    rewards = np.asarray(rewards)
    n = rewards.shape[0] if rewards.ndim else -1
    fields: dict[str, np.ndarray] = {"obs": obs}
    if next_obs is not None:
        fields["next_obs"] = np.asarray(next_obs)
    fields["actions"] = actions
    fields["rewards"] = rewards
    if rewards.ndim != 1:
        raise DatasetError(f"{source}: rewards must be 1-D (N,), got shape {rewards.shape}.")
    for name, arr in fields.items():
        if arr.ndim == 0 or arr.shape[0] != n:
            raise DatasetError(
                f"{source}: field {name!r} has shape {arr.shape}, expected {n} rows like rewards."
            )

    if observation_space is not None:
        expected = (flat_obs_dim(observation_space),)
        for name in ("obs", "next_obs"):
            if name in fields and tuple(fields[name].shape[1:]) != expected:
                raise DatasetError(
                    f"{source}: {name} has per-transition shape {tuple(fields[name].shape[1:])} "
                    f"(array {fields[name].shape}) but the environment's observation space "
                    f"{observation_space} flattens to shape {expected}."
                )
    if action_space is not None and tuple(actions.shape[1:]) != tuple(action_space.shape):
        raise DatasetError(
            f"{source}: actions have per-transition shape {tuple(actions.shape[1:])} (array "
            f"{actions.shape}) but the action space {action_space} has shape {tuple(action_space.shape)}."
        )

    for name, arr in fields.items():
        if not np.issubdtype(arr.dtype, np.number):
            raise DatasetError(f"{source}: field {name!r} has non-numeric dtype {arr.dtype}.")
        bad = ~np.isfinite(arr)
        if bad.any():
            bad_rows = bad.reshape(n, -1).any(axis=1)
            first = int(np.argmax(bad_rows))
            raise DatasetError(
                f"{source}: field {name!r} contains {int(bad.sum())} non-finite values (NaN or "
                f"inf) in {int(bad_rows.sum())} transitions; first at {_location(first, episode, step)}."
            )

    if action_space is not None:
        low = np.broadcast_to(np.asarray(action_space.low, np.float64), action_space.shape)
        high = np.broadcast_to(np.asarray(action_space.high, np.float64), action_space.shape)
        a = actions.astype(np.float64).reshape(n, -1)
        low, high = low.reshape(-1), high.reshape(-1)
        excess = np.maximum(low - a, a - high)
        outside = excess > action_tolerance
        if outside.any():
            row, dim = np.unravel_index(int(np.argmax(np.where(outside, excess, -np.inf))), a.shape)
            raise DatasetError(
                f"{source}: {int(outside.sum())} action values in {int(outside.any(axis=1).sum())} "
                f"transitions lie outside the dataset's action space by more than "
                f"action_tolerance={action_tolerance}; worst value {a[row, dim]:.6g} in dimension "
                f"{dim} (bounds [{low[dim]:.6g}, {high[dim]:.6g}]) at {_location(int(row), episode, step)}. "
                "Check that the dataset's action_space matches the data, or raise action_tolerance."
            )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def check_dataset_id(dataset_id: str, where: str = "dataset id") -> None:
    """A DatasetError unless ``dataset_id`` is a Minari dataset id, ``(namespace/)name-vN``
    (checked before anything is written: Minari creates the directory of a malformed id, and every
    later listing of the local store then fails)."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DatasetError(f"{where} {dataset_id!r} is not a Minari dataset id: (namespace/)name-vN, "
                           f"e.g. d4rl/hopper/medium-v2") from None


def list_local_datasets() -> list[str]:
    """Ids of the Minari datasets in the local store (``MINARI_DATASETS_PATH`` or ``~/.minari``)."""
    import minari

    return sorted(minari.list_local_datasets().keys())


def _datasets_root() -> str:
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join(
        os.path.expanduser("~"), ".minari", "datasets"
    )


def _open_minari(dataset_id: str):
    import minari

    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError as err:
        problem, cause = "was not found in", err
    except ValueError as err:  # malformed id, unsupported Minari version, broken metadata
        problem, cause = f"could not be read ({err}) from", err
    local = list_local_datasets()
    listing = "\n".join(f"  {d}" for d in local) if local else "  (none)"
    raise DatasetError(
        f"Minari dataset {dataset_id!r} {problem} the local store {_datasets_root()} "
        f"(set MINARI_DATASETS_PATH to use another).\n"
        f"Local datasets:\n{listing}\n"
        + (f"Import D4RL's own file with `python experiments/import_d4rl.py --file=<env>_<dataset>-<version>.hdf5` "
           "(it writes d4rl/<env>/<dataset>-<version>)." if dataset_id.startswith("d4rl/") else
           f"Download it with `minari download {dataset_id}`, or generate one with "
           "`python experiments/make_dataset.py --env=<env id> ...`.")
    ) from cause


def _action_bounds(action_space: spaces.Space, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(action_space, spaces.Box):
        raise DatasetError(
            f"{dataset_id}: action space {action_space} is not a Box; smac_jax supports only "
            "continuous actions."
        )
    low = np.broadcast_to(np.asarray(action_space.low, np.float64), action_space.shape).copy()
    high = np.broadcast_to(np.asarray(action_space.high, np.float64), action_space.shape).copy()
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise DatasetError(
            f"{dataset_id}: action space {action_space} is unbounded; actions cannot be rescaled "
            "to [-1, 1]."
        )
    return low, high


def load_dataset(
    dataset_id: str,
    *,
    normalize_obs: bool = False,
    reward_scale: float = 1.0,
    reward_bias: float = 0.0,
    gamma: float = 0.99,
    action_tolerance: float = 1e-3,
    reward: str = "env",
    env_kwargs: dict | None = None,
) -> OfflineDataset:
    """Load a local Minari dataset as flat transitions.

    For each episode with observations ``o_0..o_T`` and ``T`` steps: ``obs = o_0..o_{T-1}``,
    ``next_obs = o_1..o_T``; Dict / Tuple observations are flattened in the stored observation
    space's key order (:func:`smac_jax.envs.flatten_obs_keys`).

    Args:
      dataset_id: a locally available Minari id (see :func:`list_local_datasets`).
      normalize_obs: standardise obs and next_obs with the mean and ``std + 1e-3`` of the
        dataset's ``obs`` rows.
      reward_scale, reward_bias: ``reward = raw * reward_scale + reward_bias``; ``mc_return``
        uses this reward, ``rtg`` / ``traj_return`` the raw one.
      gamma: discount of ``mc_return``.
      action_tolerance: actions may exceed the dataset's action bounds by this much (they are
        clipped); beyond it loading fails.
      reward: ``"env"`` (the stored rewards) or ``"success"`` (each step's stored
        ``infos["success"]`` as a 0 / 1 reward, :func:`success_rewards`; the environments the
        dataset builds then give the same binary reward, :class:`smac_jax.envs.SuccessReward`).
      env_kwargs: keyword arguments for every environment the dataset builds (``gym.make``'s,
        over the stored spec's); see :attr:`OfflineDataset.env_kwargs`.

    Raises:
      DatasetError: the id is not local, or the data is malformed (wrong shapes, NaN / inf,
        actions outside the action space).
    """
    if reward not in envs_lib.REWARDS:
        raise DatasetError(f"{dataset_id}: reward must be one of {envs_lib.REWARDS}, got {reward!r}")
    for name, v in (("reward_scale", reward_scale), ("reward_bias", reward_bias), ("gamma", gamma),
                    ("action_tolerance", action_tolerance)):
        if not np.isfinite(v):
            raise DatasetError(f"{dataset_id}: {name} must be a finite number, got {v}")
    if not 0.0 < gamma <= 1.0:
        raise DatasetError(f"{dataset_id}: gamma must be in (0, 1], got {gamma}")
    if action_tolerance < 0:
        raise DatasetError(f"{dataset_id}: action_tolerance must be >= 0, got {action_tolerance}")
    try:
        ds = _load_dataset(dataset_id, normalize_obs, reward_scale, reward_bias, gamma, action_tolerance, reward)
        ds.env_kwargs = dict(env_kwargs or {})
        return ds
    except DatasetError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, EOFError) as e:  # h5py / minari on damaged files
        detail = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise DatasetError(
            f"{dataset_id}: the dataset's files cannot be read ({type(e).__name__}: {detail}); it is damaged or "
            f"incomplete: delete it (`minari delete {dataset_id}`) and download or generate it again") from None


def load_dataset_from_config(dataset_config: Any) -> OfflineDataset:
    """:func:`load_dataset` with the loading options of a run config's ``dataset`` section
    (``id``, ``normalize_obs``, ``reward_scale``, ``reward_bias``, ``gamma``, ``reward``,
    ``action_tolerance``, ``env_kwargs``)."""
    dc = dataset_config
    env_kwargs = dc.get("env_kwargs") or {}
    return load_dataset(dc.id, normalize_obs=dc.normalize_obs, reward_scale=dc.reward_scale,
                        reward_bias=dc.reward_bias, gamma=dc.gamma, reward=dc.get("reward", "env"),
                        action_tolerance=dc.get("action_tolerance", 1e-3),
                        env_kwargs=env_kwargs.to_dict() if hasattr(env_kwargs, "to_dict") else dict(env_kwargs))


def success_rewards(infos: Any, steps: int, where: str) -> np.ndarray:
    """The binary reward of each of an episode's ``steps`` steps: 1.0 where the step's
    ``infos["success"]`` is true, else 0.0.

    ``infos`` is the episode's stored info dict (Minari's ``EpisodeData.infos``), whose entries
    hold either one value per step or, as Minari records them, one more (the reset's info first).
    """
    if not isinstance(infos, dict) or "success" not in infos:
        keys = sorted(infos) if isinstance(infos, dict) else []
        raise DatasetError(f"{where}: no per-step infos['success'] stored (info keys: {keys}), so "
                           "dataset.reward='success' cannot be used; use dataset.reward='env'")
    success = np.asarray(infos["success"]).reshape(-1)
    if success.shape[0] == steps + 1:
        success = success[1:]  # Minari stores the reset's info first
    if success.shape[0] != steps:
        raise DatasetError(f"{where}: infos['success'] has {success.shape[0]} entries for {steps} steps")
    return success.astype(bool).astype(np.float64)


def _load_dataset(dataset_id, normalize_obs, reward_scale, reward_bias, gamma, action_tolerance,
                  reward="env") -> OfflineDataset:
    ds = _open_minari(dataset_id)
    obs_space = ds.observation_space
    act_space = ds.action_space
    low, high = _action_bounds(act_space, dataset_id)
    obs_dim = flat_obs_dim(obs_space)

    obs_chunks, next_chunks, act_chunks = [], [], []
    rew_chunks, term_chunks, trunc_chunks, length_list = [], [], [], []
    n_episodes = 0
    for ep in ds.iterate_episodes():
        where = f"{dataset_id}: episode {n_episodes} (Minari episode id {ep.id})"
        rewards = np.asarray(ep.rewards, dtype=np.float64).reshape(-1)
        steps = rewards.shape[0]
        if steps == 0:
            continue  # an episode without steps has no transitions (and gets no index)
        if reward == "success":
            rewards = success_rewards(ep.infos, steps, where)
        flat = flatten_observations(obs_space, ep.observations, where=f"{where}: observations")
        if flat.shape[0] != steps + 1:
            raise DatasetError(
                f"{where}: {flat.shape[0]} observations for {steps} steps (expected {steps + 1})."
            )
        actions = np.asarray(ep.actions)
        if actions.shape != (steps,) + tuple(act_space.shape):
            raise DatasetError(
                f"{where}: actions have shape {actions.shape}, expected "
                f"{(steps,) + tuple(act_space.shape)} for action space {act_space}."
            )
        for name, flags in (("terminations", ep.terminations), ("truncations", ep.truncations)):
            if np.asarray(flags).reshape(-1).shape[0] != steps:
                raise DatasetError(f"{where}: {name} has {np.size(flags)} entries for {steps} steps.")
        obs_chunks.append(flat[:-1])
        next_chunks.append(flat[1:])
        act_chunks.append(actions.reshape(steps, -1))
        rew_chunks.append(rewards)
        term_chunks.append(np.asarray(ep.terminations).reshape(-1))
        trunc_chunks.append(np.asarray(ep.truncations).reshape(-1))
        length_list.append(steps)
        n_episodes += 1

    if n_episodes == 0 or sum(length_list) == 0:
        raise DatasetError(f"{dataset_id}: the dataset contains no transitions.")

    lengths = np.asarray(length_list, dtype=np.int64)
    obs = np.concatenate(obs_chunks)
    next_obs = np.concatenate(next_chunks)
    raw_actions = np.concatenate(act_chunks)
    raw_rewards = np.concatenate(rew_chunks)
    episode = np.repeat(np.arange(n_episodes, dtype=np.int32), lengths)
    step = np.arange(episode.shape[0]) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    del obs_chunks, next_chunks, act_chunks

    validate_transitions(
        obs=obs,
        next_obs=next_obs,
        actions=raw_actions,
        rewards=raw_rewards,
        episode=episode,
        step=step,
        observation_space=obs_space,
        action_space=act_space,
        action_tolerance=action_tolerance,
        source=dataset_id,
    )

    rewards = raw_rewards * float(reward_scale) + float(reward_bias)
    rtg = returns_to_go(raw_rewards, episode)
    mc_return = discounted_returns(rewards, episode, gamma)
    traj_return = np.repeat(rtg[np.cumsum(lengths) - lengths], lengths)  # rtg at each first step

    if normalize_obs:
        obs_mean = obs.mean(axis=0, dtype=np.float64).astype(np.float32)
        obs_std = (obs.std(axis=0, dtype=np.float64) + OBS_STD_EPS).astype(np.float32)
        obs = (obs - obs_mean) / obs_std
        next_obs = (next_obs - obs_mean) / obs_std
    else:
        obs_mean = np.zeros(obs_dim, np.float32)
        obs_std = np.ones(obs_dim, np.float32)

    transitions = Transitions(
        obs=obs.astype(np.float32, copy=False),
        action=rescale_actions(raw_actions, low.reshape(-1), high.reshape(-1)),
        reward=rewards.astype(np.float32),
        next_obs=next_obs.astype(np.float32, copy=False),
        terminated=np.concatenate(term_chunks).astype(np.float32),
        truncated=np.concatenate(trunc_chunks).astype(np.float32),
        episode=episode,
        rtg=rtg.astype(np.float32),
        mc_return=mc_return.astype(np.float32),
        traj_return=traj_return.astype(np.float32),
    )

    metadata = ds.storage.metadata
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    return OfflineDataset(
        transitions=transitions,
        obs_mean=obs_mean,
        obs_std=obs_std,
        dataset_id=dataset_id,
        env_spec=ds.env_spec,
        ref_min_score=None if ref_min is None else float(ref_min),
        ref_max_score=None if ref_max is None else float(ref_max),
        n_episodes=n_episodes,
        obs_layout=flatten_obs_keys(obs_space),
        action_low=low.astype(np.float32),
        action_high=high.astype(np.float32),
        observation_space=obs_space,
        action_space=act_space,
        eval_env_spec=getattr(ds, "_eval_env_spec", None),
        normalize_obs=bool(normalize_obs),
        reward_scale=float(reward_scale),
        reward_bias=float(reward_bias),
        gamma=float(gamma),
        reward=reward,
    )
