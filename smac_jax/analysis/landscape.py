"""Policy landscapes: interpolation paths and planes between actor parameters, their batched
evaluation, parameter-trajectory t-SNE, and loading actors from a run's checkpoints.

Parameter points are pytrees of float arrays (an actor's ``{"params": {...}}``). A *stacked*
pytree has one extra leading axis on every leaf, one entry per point; :func:`evaluate_stacked`
evaluates every point of such a stack at once.

Summary of a 1-D path (evaluated returns ``R(t_0), ..., R(t_{n-1})`` in path order):

* largest drop ``D = max_t (max_{t' <= t} R(t') - R(t))``: the deepest dip below the best value
  reached earlier on the path (0 for a non-decreasing path);
* "linearly connected" iff ``D <= 2 * SE_pooled``, where ``SE_pooled = sqrt(mean_t SE(t)^2)`` and
  ``SE(t)`` is the standard error of the mean return at ``t`` over its samples (seeds, or episodes
  when there is one seed). The drop must stay within two standard errors of evaluation noise.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import jax
from absl import logging as absl_logging
import jax.numpy as jnp
import numpy as np

from smac_jax.errors import ConfigError
from smac_jax.learners.base import Learner, TrainState, get_learner_class, make_learner
from smac_jax.learners.handover import convert_actor
from smac_jax.training.evaluation import DeviceEvaluator, make_act_fn, run_episodes
from smac_jax.training.vmap_sweep import (is_swept, pair_label, parse_spec, setting_dirs, setting_lanes, setting_of,
                                          sweeps_offline)

Params = Any

__all__ = [
    "ActorSnapshot",
    "LandscapeInputError",
    "PathVerdict",
    "actor_state",
    "Checkpoints",
    "checkpoint_steps",
    "checkpoints_of",
    "common_actors",
    "concatenate",
    "connectivity",
    "evaluate_stacked",
    "evaluation_environment",
    "expand_runs",
    "flatten_params",
    "interpolate",
    "largest_drop",
    "load_actor",
    "load_trajectory",
    "plane",
    "plane_coordinates",
    "read_config",
    "read_run_config",
    "stack",
    "stack_size",
    "take",
    "tsne_trajectories",
    "unstack",
]


class LandscapeInputError(ValueError):
    """A workdir, checkpoint or parameter set that the landscape tools cannot use."""


# --------------------------------------------------------------------------------------------
# Pytree arithmetic
# --------------------------------------------------------------------------------------------
def stack(trees: Sequence[Params]) -> Params:
    """Stack same-structured pytrees on a new leading axis (numpy leaves)."""
    if not trees:
        raise ValueError("stack needs at least one pytree")
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack(stacked: Params) -> list[Params]:
    """The inverse of :func:`stack`: one pytree per entry of the leading axis."""
    return [take(stacked, i) for i in range(stack_size(stacked))]


def take(stacked: Params, index: int) -> Params:
    """Entry ``index`` of the leading axis of every leaf."""
    return jax.tree.map(lambda x: x[index], stacked)


def concatenate(stacks: Sequence[Params]) -> Params:
    """Join stacked pytrees along their leading axis."""
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *stacks)


def stack_size(stacked: Params) -> int:
    """The length of the leading axis (the same on every leaf)."""
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(stacked)}
    if len(sizes) != 1:
        raise ValueError(f"stacked pytree leaves disagree on the leading axis: {sorted(sizes)}")
    return sizes.pop()


def _check_same(*trees: Params) -> None:
    shapes = [jax.tree.map(np.shape, t) for t in trees]
    for s in shapes[1:]:
        if jax.tree.structure(s) != jax.tree.structure(shapes[0]) or s != shapes[0]:
            raise ValueError(f"parameter sets differ in structure or shapes: {shapes[0]} vs {s}")


def _combine(coefficients: Sequence[np.ndarray], trees: Sequence[Params]) -> Params:
    """``sum_k c_k theta_k`` for coefficient vectors ``c_k`` of length P: numpy leaves (P, *shape),
    computed in each leaf's dtype."""
    _check_same(*trees)

    def leaf(*xs):
        xs = [np.asarray(x) for x in xs]
        out = np.zeros((len(coefficients[0]),) + xs[0].shape, xs[0].dtype)
        for c, x in zip(coefficients, xs):
            out += np.asarray(c, x.dtype).reshape((-1,) + (1,) * x.ndim) * x[None]
        return out

    return jax.tree.map(leaf, *trees)


def interpolate(theta_a: Params, theta_b: Params, t) -> Params:
    """``theta(t) = (1 - t) theta_a + t theta_b``.

    A scalar ``t`` gives one pytree; a 1-D grid of ``n`` values gives the stacked pytree (leading
    axis ``n``, in grid order). ``t = 0`` and ``t = 1`` reproduce ``theta_a`` and ``theta_b``
    exactly (the other term is multiplied by an exact 0).
    """
    t_arr = np.asarray(t, np.float64)
    grid = np.atleast_1d(t_arr)
    if grid.ndim != 1:
        raise ValueError(f"t must be a scalar or a 1-D grid, got shape {t_arr.shape}")
    out = _combine([1.0 - grid, grid], [theta_a, theta_b])
    return jax.tree.map(lambda x: x[0], out) if t_arr.ndim == 0 else out


def plane(theta: Params, theta_u: Params, theta_v: Params, xs, ys) -> Params:
    """The grid ``theta + x (theta_u - theta) + y (theta_v - theta)`` for ``x in xs``, ``y in ys``.

    Computed as ``(1 - x - y) theta + x theta_u + y theta_v`` (the same point), so that
    ``(0, 0)``, ``(1, 0)`` and ``(0, 1)`` reproduce ``theta``, ``theta_u``, ``theta_v`` exactly.
    Returns the stacked pytree with leading axis ``len(ys) * len(xs)``; point ``k`` is
    ``(xs[k % len(xs)], ys[k // len(xs)])``, so per-point values ``reshape(len(ys), len(xs))``
    line up with ``np.meshgrid(xs, ys)`` (what ``matplotlib.pyplot.contour`` takes).
    """
    gx, gy = np.meshgrid(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
    gx, gy = gx.ravel(), gy.ravel()
    return _combine([1.0 - gx - gy, gx, gy], [theta, theta_u, theta_v])


def flatten_params(params: Params) -> np.ndarray:
    """All leaves, raveled and concatenated in pytree order, as one float64 vector."""
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)])


def plane_coordinates(theta: Params, theta_u: Params, theta_v: Params, point: Params,
                      return_residual: bool = False):
    """Coordinates ``(x, y)`` of ``point`` in the basis ``u = theta_u - theta``, ``v = theta_v - theta``.

    Least squares on the flattened parameters: ``argmin_{x,y} |point - theta - x u - y v|^2``.
    ``theta``, ``theta_u`` and ``theta_v`` land at ``(0, 0)``, ``(1, 0)`` and ``(0, 1)``. With
    ``return_residual``, also returns ``|point - theta - x u - y v| / |point - theta|`` (0 for a
    point in the plane; 0 as well when ``point == theta``), the part of the point the plane misses.
    """
    _check_same(theta, theta_u, theta_v, point)
    origin = flatten_params(theta)
    basis = np.stack([flatten_params(theta_u) - origin, flatten_params(theta_v) - origin], axis=1)
    if np.linalg.matrix_rank(basis) < 2:
        raise LandscapeInputError("theta_u - theta and theta_v - theta are linearly dependent (the two runs' "
                                  "fine-tuned actors lie on one line through the origin); they span no plane")
    r = flatten_params(point) - origin
    coords = np.linalg.lstsq(basis, r, rcond=None)[0]
    if not return_residual:
        return coords
    norm = np.linalg.norm(r)
    return coords, float(np.linalg.norm(r - basis @ coords) / norm) if norm > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Path summaries
# --------------------------------------------------------------------------------------------
def largest_drop(returns, axis: int = -1):
    """``max_t (max_{t' <= t} R(t') - R(t))`` along ``axis`` (path order); >= 0.

    A 1-D input gives a float; otherwise one value per remaining index."""
    r = np.asarray(returns, np.float64)
    if r.shape[axis] == 0 or np.any(np.isnan(r)):
        raise ValueError("largest_drop needs a non-empty path without NaN")
    drop = np.max(np.maximum.accumulate(r, axis=axis) - r, axis=axis)
    return float(drop) if drop.ndim == 0 else drop


@dataclasses.dataclass(frozen=True)
class PathVerdict:
    """The summary of a path: mean and standard error per point, largest drop and the verdict."""

    mean: np.ndarray  # (T,) mean return per point
    se: np.ndarray  # (T,) standard error of that mean
    drop: float  # largest_drop(mean)
    peak_index: int  # where the best value before the deepest dip was reached
    dip_index: int  # where the deepest dip is
    pooled_se: float  # sqrt(mean(se^2))
    threshold: float  # noise_multiple * pooled_se
    connected: bool  # drop <= threshold

    def describe(self) -> str:
        word = "linearly connected" if self.connected else "NOT linearly connected"
        return (f"largest drop {self.drop:.2f} (from point {self.peak_index} to point {self.dip_index}) vs "
                f"2 x pooled s.e. = {self.threshold:.2f}: {word}")


def connectivity(samples, noise_multiple: float = 2.0) -> PathVerdict:
    """Largest drop of the mean path and the "linearly connected" verdict.

    ``samples``: array (T, n): n >= 2 independent evaluations (per-seed mean returns, or episode
    returns) at each of the T path points. ``mean(t)`` and ``SE(t) = std_{ddof=1}(t) / sqrt(n)``;
    ``D = largest_drop(mean)``; connected iff ``D <= noise_multiple * sqrt(mean_t SE(t)^2)``.
    """
    s = np.asarray(samples, np.float64)
    if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 2:
        raise ValueError(f"connectivity needs samples of shape (points, n >= 2), got {s.shape}")
    mean = s.mean(axis=1)
    se = s.std(axis=1, ddof=1) / np.sqrt(s.shape[1])
    gaps = np.maximum.accumulate(mean) - mean
    dip = int(np.argmax(gaps))
    peak = int(np.argmax(mean[: dip + 1]))
    drop = float(gaps[dip])
    pooled = float(np.sqrt(np.mean(se ** 2)))
    threshold = noise_multiple * pooled
    return PathVerdict(mean, se, drop, peak, dip, pooled, threshold, drop <= threshold)


# --------------------------------------------------------------------------------------------
# Batched evaluation
# --------------------------------------------------------------------------------------------
def actor_state(actor_params: Params) -> TrainState:
    """A :class:`TrainState` holding only ``params["actor"]`` (what every learner's ``act`` reads);
    stacked actor parameters give a stacked state."""
    n = stack_size(actor_params)
    return TrainState(params={"actor": actor_params}, opt_state={}, step=jnp.zeros((n,), jnp.int32))


_POLICIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stacked_policy(learner: Learner):
    """jit(vmap over points of the deterministic ``learner.act``), built once per learner so that
    repeated evaluations reuse the compiled program."""
    if learner not in _POLICIES:
        _POLICIES[learner] = make_act_fn(learner)
    return _POLICIES[learner]


def evaluate_stacked(learner: Learner, actor_states_stacked: Params | TrainState, env_fn: Callable[[], gym.Env],
                     episodes: int, seed: int, max_steps: int | None = None, return_lengths: bool = False,
                     vectorized: bool | None = None, threads: int | None = None):
    """Undiscounted returns of the deterministic policy at every stacked point: (points, episodes).

    ``actor_states_stacked``: stacked actor parameters (leading axis = points) or a stacked
    :class:`TrainState`. One environment per (point, episode) is built with ``env_fn``; episode
    ``e`` of every point is reset with seed ``seed + e`` (the same start states at every point).
    All environments step in lockstep: per environment step, ONE jitted call of
    ``vmap_points(learner.act)`` on observations (points, episodes, obs_dim); finished episodes are
    no longer stepped and their actions ignored. ``max_steps`` caps the episode length (default:
    the environments' own time limits). With ``return_lengths``, also the number of steps of every
    episode, (points, episodes).

    ``vectorized``, ``threads``: as in :func:`smac_jax.training.evaluation.run_episodes` (default:
    vectorised MuJoCo stepping where the task supports it, its physics in one thread per 16
    environments up to the CPU count; results identical to ``env.step``'s).
    """
    states = actor_states_stacked if isinstance(actor_states_stacked, TrainState) else actor_state(actor_states_stacked)
    n_points = stack_size(states.params["actor"])
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    policy = _stacked_policy(learner)
    envs = [env_fn() for _ in range(n_points * episodes)]
    try:
        act = lambda obs: policy(states, obs.reshape(n_points, episodes, -1))  # noqa: E731
        returns, lengths, *_ = run_episodes(envs, act, [int(seed) + i % episodes for i in range(len(envs))],
                                            max_steps, vectorized, threads=threads)
    finally:
        for env in envs:
            env.close()
    returns = returns.reshape(n_points, episodes)
    return (returns, lengths.reshape(n_points, episodes)) if return_lengths else returns


def evaluate_stacked_on_device(learner: Learner, actor_states_stacked: Params | TrainState, env, episodes: int,
                               seed: int, max_steps: int | None = None, return_lengths: bool = False):
    """:func:`evaluate_stacked` on a JAX-native environment (``env``: a
    :class:`smac_jax.jax_envs.JaxEnv`, e.g. ``dataset.make_jax_env(eval_env=True)``): every
    (point, episode) inside one compiled program
    (:class:`smac_jax.training.evaluation.DeviceEvaluator`), no host call per step. Episode ``e``
    of every point starts from ``env.reset(fold_in(PRNGKey(seed), e))`` (the same start states at
    every point; other draws than the Gymnasium path's). ``max_steps`` caps the episode length
    (default: the environment's time limit, else 100,000 steps). Returns as :func:`evaluate_stacked`."""
    states = actor_states_stacked if isinstance(actor_states_stacked, TrainState) else actor_state(actor_states_stacked)
    n_points = stack_size(states.params["actor"])
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cap = int(max_steps) if max_steps is not None else 100_000
    evaluators = _DEVICE_EVALUATORS.setdefault(learner, {})
    if (env, cap) not in evaluators:  # one per learner and environment: its compiled programs are reused
        evaluators[(env, cap)] = DeviceEvaluator(env, 1, episodes, base_seed=0, max_steps=cap)
    base = jax.random.PRNGKey(int(seed))
    keys = jax.vmap(lambda e: jax.random.fold_in(base, e))(jnp.arange(episodes, dtype=jnp.uint32))
    eps = evaluators[(env, cap)].run(_stacked_policy(learner), states, jnp.broadcast_to(keys, (n_points, *keys.shape)))
    return (eps.returns, eps.lengths) if return_lengths else eps.returns


_DEVICE_EVALUATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # learner -> {(env, cap): evaluator}


# --------------------------------------------------------------------------------------------
# t-SNE
# --------------------------------------------------------------------------------------------
def interpolation_grid(points: int, extend: bool = False) -> np.ndarray:
    """``points`` values of t evenly spaced on [0, 1], both checkpoints included; with ``extend``,
    as many more at the same spacing beyond each end as fit within 0.25 of it."""
    if points < 2:
        raise LandscapeInputError(f"an interpolation needs at least 2 points, got {points}")
    step = 1.0 / (points - 1)
    k = int(np.floor(0.25 / step + 1e-9)) if extend else 0
    return np.arange(-k, points + k) * step


def tsne_perplexity(n: int, perplexity: float | None = None) -> float:
    """The t-SNE perplexity for ``n`` snapshots (default ``min(30, (n - 1) / 3)``); an error for
    fewer than 3 snapshots or a perplexity outside (0, n) (checked before anything is evaluated)."""
    if n < 3:
        raise LandscapeInputError(f"t-SNE needs at least 3 snapshots, got {n}")
    perplexity = min(30.0, (n - 1) / 3.0) if perplexity is None else float(perplexity)
    if not 0.0 < perplexity < n:
        raise LandscapeInputError(f"t-SNE perplexity must be in (0, {n}) for {n} snapshots, got {perplexity:g}")
    return perplexity


def tsne_trajectories(trajectories: Sequence[Sequence[Params]], perplexity: float | None = None,
                      seed: int = 0, **tsne_kwargs) -> list[np.ndarray]:
    """Project parameter trajectories together to 2-D with scikit-learn's t-SNE.

    ``trajectories``: a sequence of trajectories, each a sequence of same-structured parameter
    pytrees (e.g. an actor at successive checkpoints). Every snapshot is flattened
    (:func:`flatten_params`); all snapshots are embedded at once (PCA initialisation,
    ``random_state=seed``; ``perplexity`` defaults to ``min(30, (N - 1) / 3)`` for N snapshots;
    the exact gradient up to 500 snapshots, Barnes-Hut beyond; ``tsne_kwargs`` go to
    ``sklearn.manifold.TSNE``). Returns one (len(trajectory), 2) array per trajectory.
    """
    from sklearn.manifold import TSNE

    flat = [flatten_params(p) for traj in trajectories for p in traj]
    n = len(flat)
    if len({v.size for v in flat}) != 1:
        raise ValueError("all snapshots must have the same number of parameters (convert actor kinds first)")
    perplexity = tsne_perplexity(n, perplexity)
    tsne_kwargs.setdefault("method", "exact" if n <= 500 else "barnes_hut")
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
               **tsne_kwargs).fit_transform(np.stack(flat))
    out, i = [], 0
    for traj in trajectories:
        out.append(emb[i:i + len(traj)])
        i += len(traj)
    return out


# --------------------------------------------------------------------------------------------
# Actors from a run's checkpoints
# --------------------------------------------------------------------------------------------
PHASES = ("offline", "online")


@dataclasses.dataclass
class ActorSnapshot:
    """The actor of every seed of one run at one saved step.

    ``actor`` has numpy leaves with a leading seed axis; ``learner`` is the phase's learner
    (its ``act`` evaluates the actor); ``kind`` is its ``actor_kind``."""

    workdir: str
    phase: str
    step: int
    learner: Learner
    actor: Params

    @property
    def kind(self) -> str:
        return self.learner.actor_kind

    @property
    def n_seeds(self) -> int:
        return stack_size(self.actor)

    def seed(self, index: int) -> Params:
        return take(self.actor, index)


def read_config(workdir: str) -> dict:
    """A workdir's ``config.json`` as a dict (any run, a ``vmap_sweep`` one included)."""
    if not os.path.isdir(workdir):
        raise LandscapeInputError(f"workdir {workdir} does not exist")
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise LandscapeInputError(f"{workdir} holds no run (no config.json)")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise LandscapeInputError(f"cannot read {path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Checkpoints:
    """Where a run's checkpoints are: ``root`` (the workdir holding ``checkpoints/``) and, for a
    setting of a ``vmap_sweep`` run, the lanes of each phase that hold its seeds (else None)."""

    root: str
    lanes: dict[str, slice] | None = None
    offline_swept: bool = False  #: its offline checkpoints hold every setting's lanes


def checkpoints_of(workdir: str) -> Checkpoints:
    """A run's own checkpoints, or for ``<sweep>/settings/<k>`` (a setting of a ``vmap_sweep``
    run) the sweep's checkpoints and that setting's lanes."""
    member = setting_of(workdir)
    if member is None:
        return Checkpoints(workdir)
    root, k, config = member
    try:
        return Checkpoints(root, setting_lanes(config, k), sweeps_offline(parse_spec(config["vmap_sweep"])))
    except ConfigError as e:
        raise LandscapeInputError(f"{workdir}: {e}") from None


def expand_runs(workdirs: Sequence[str]) -> list[tuple[str, str | None]]:
    """``(workdir, label)`` per run: each of ``workdirs`` in order, a ``vmap_sweep`` run replaced by
    its settings' directories (``settings/<k>``, those written so far); a setting (expanded or given
    as ``settings/<k>``) is labelled with its learners and values (``sac -> sac [actor_lr=0.0001]``),
    a plain run with None (the caller names it)."""
    out: list[tuple[str, str | None]] = []
    for wd in workdirs:
        if not is_swept(wd):
            member = setting_of(wd)  # a setting given directly is named alike
            out.append((wd, pair_label(member[2], member[1]) if member else None))
            continue
        dirs = setting_dirs(wd)
        if not dirs:
            raise LandscapeInputError(f"{wd} is a vmap_sweep run that has not written its settings yet")
        config = read_config(wd)
        for d in dirs:
            out.append((d, pair_label(config, int(os.path.basename(d)))))
    return out


def read_run_config(workdir: str) -> dict:
    """The run's ``config.json`` as a dict. A setting of a ``vmap_sweep`` run
    (``<workdir>/settings/<k>``) reads as a run of its own: its config, the sweep's checkpoints
    restricted to its seeds."""
    config = read_config(workdir)
    if config.get("vmap_sweep"):
        raise LandscapeInputError(f"{workdir} is a vmap_sweep run: its checkpoints hold settings x seeds lanes; "
                                  f"analyse one setting at a time as {os.path.join(workdir, 'settings', '<k>')}")
    return config


def checkpoint_steps(workdir: str, phase: str) -> list[int]:
    """The saved steps of ``phase`` (``checkpoints/<phase>/<step>``), ascending."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    root = os.path.join(checkpoints_of(workdir).root, "checkpoints", phase)
    if not os.path.isdir(root):
        return []
    return sorted(int(d) for d in os.listdir(root)
                  if d.isdigit() and os.path.isdir(os.path.join(root, d, "state")))


def _params_path(phase: str) -> tuple[str, ...]:
    # The offline checkpoint is the seed-stacked TrainState; the online one is {"states", "buffers"}.
    return ("params",) if phase == "offline" else ("states", "params")


def _nest(path: tuple[str, ...], leaf: Any) -> dict:
    for k in reversed(path):
        leaf = {k: leaf}
    return leaf


@functools.lru_cache(maxsize=64)
def _learner_and_template(name: str, obs_dim: int, act_dim: int, agent_json: str, n_seeds: int):
    """The learner a run's config builds, and ``jax.eval_shape`` of its seed-stacked ``init``'s
    parameters (as the pipeline builds its states); one learner object per configuration, so
    that its compiled policy is reused (:func:`evaluate_stacked`).

    Hyperparameters this version of the learner no longer has are ignored: only the network
    settings matter here, and the caller's template check catches any that changed a group it
    reads. A learner that needs host-side preparation (SMAC's score model) gets an empty
    placeholder for it."""
    known = get_learner_class(name).default_config()
    learner = make_learner(name, obs_dim, act_dim, {k: v for k, v in json.loads(agent_json).items() if k in known})
    traced = learner
    if getattr(learner, "score_params", False) is None:
        traced = copy.copy(learner)
        traced.score_params = {}
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    return learner, jax.eval_shape(jax.vmap(traced.init), keys).params


def _saved_shapes(path: str, phase: str, group: str) -> Params:
    import orbax.checkpoint as ocp

    try:
        with ocp.PyTreeCheckpointer() as ck:
            meta = ck.metadata(path).item_metadata
    except Exception as e:  # noqa: BLE001  (orbax / tensorstore errors of a damaged checkpoint)
        raise LandscapeInputError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    tree = getattr(meta, "tree", meta)
    if not tree:
        raise LandscapeInputError(f"cannot read {path}: it lists no arrays (a damaged or incomplete checkpoint)")
    try:
        for k in (*_params_path(phase), group):
            tree = tree[k]
    except (KeyError, TypeError):
        raise LandscapeInputError(f"{path} holds no {group} parameters") from None
    return jax.tree.map(lambda m: tuple(m.shape), tree)


def load_actor(workdir: str, phase: str, step: int | None = None) -> ActorSnapshot:
    """The actor of every seed saved at ``checkpoints/<phase>/<step>`` (default: the last step).

    Only the actor is read (an orbax partial restore). The learner is rebuilt from the run's
    ``config.json`` (hyperparameters the learner no longer has are ignored); its seed-stacked
    ``init`` under ``jax.eval_shape`` is the template, and a
    checkpoint whose actor differs from it in structure or shapes is an error. Observation and
    action sizes are read from the saved actor (``trunk/dense_0`` and ``mean`` kernels).
    """
    step, learner, params = load_params(workdir, phase, step, ("actor",))
    return ActorSnapshot(workdir, phase, step, learner, params["actor"])


def load_params(workdir: str, phase: str, step: int | None = None,
                groups: Sequence[str] = ("actor",)) -> tuple[int, Learner, dict[str, Params]]:
    """``(step, learner, {group: parameters})``: the parameter ``groups`` (e.g. ``("actor",
    "critic")``) of every seed saved at ``checkpoints/<phase>/<step>`` (default: the last step),
    numpy leaves with a leading seed axis; read and checked as :func:`load_actor` reads the actor.
    For a setting of a ``vmap_sweep`` run (``<sweep>/settings/<k>``), the sweep's checkpoint
    restricted to that setting's lanes."""
    import orbax.checkpoint as ocp

    config = read_run_config(workdir)
    steps = checkpoint_steps(workdir, phase)
    if not steps:
        raise LandscapeInputError(f"{workdir} has no {phase} checkpoint (checkpoints/{phase}/<step>)")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise LandscapeInputError(f"{workdir} has no {phase} checkpoint at step {step} (saved: {steps})")
    where = checkpoints_of(workdir)
    path = os.path.join(os.path.abspath(where.root), "checkpoints", phase, str(step), "state")
    saved_actor = _saved_shapes(path, phase, "actor")
    try:
        n_seeds, obs_dim, _ = saved_actor["params"]["trunk"]["dense_0"]["kernel"]
        act_dim = saved_actor["params"]["mean"]["kernel"][-1]
        learner, template = _learner_and_template(config[phase]["learner"], obs_dim, act_dim,
                                                  json.dumps(config[phase]["agent"], sort_keys=True), n_seeds)
    except (KeyError, TypeError, ValueError) as e:
        raise LandscapeInputError(f"{path}: cannot rebuild the {phase} learner ({e})") from None
    missing = [g for g in groups if g not in template]
    if missing:
        raise LandscapeInputError(f"{path}: the {config[phase]['learner']} learner has no {', '.join(missing)} "
                                  f"parameters (it has {', '.join(sorted(template))})")
    for g in groups:
        saved = saved_actor if g == "actor" else _saved_shapes(path, phase, g)
        want = jax.tree.map(lambda s: tuple(s.shape), template[g])
        if jax.tree.structure(want) != jax.tree.structure(saved) or want != saved:
            raise LandscapeInputError(f"{path}: the saved {g} {saved} does not match the {g} the run's config "
                                      f"builds ({want})")
    item = _nest(_params_path(phase), {g: template[g] for g in groups})
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax warns about an optional metadata file at every restore
    try:
        with ocp.PyTreeCheckpointer() as ck:
            out = ck.restore(path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                               partial_restore=True))
    except Exception as e:  # noqa: BLE001  (orbax / tensorstore errors of a damaged checkpoint)
        raise LandscapeInputError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    finally:
        absl_logging.set_verbosity(verbosity)
    for k in _params_path(phase):
        out = out[k]
    lanes = where.lanes[phase] if where.lanes else slice(None)
    if where.lanes and lanes.stop > n_seeds:
        raise LandscapeInputError(f"{path} holds {n_seeds} lanes, not the {lanes.stop} the sweep's settings x seeds need")
    return step, learner, {g: jax.tree.map(lambda x: np.asarray(x)[lanes], out[g]) for g in groups}


def evaluation_environment(configs: dict, jax_env: bool = False) -> tuple[Any, Callable[[Any], np.ndarray], str]:
    """The evaluation environment of runs on one dataset (``configs``: {name: run config dict}),
    a returns -> value function and the value's name: the normalised score with the runs'
    reference returns (the config's ``ref_min_score``/``ref_max_score``, else the dataset's), or
    the raw return where there are none. The environment: a factory of Gymnasium environments
    (for :func:`evaluate_stacked`), or with ``jax_env`` the JAX-native port (for
    :func:`evaluate_stacked_on_device`; :class:`LandscapeInputError` where there is none)."""
    from smac_jax.data.dataset import DatasetError, load_dataset

    keys = {(c["dataset"]["id"], bool(c["dataset"]["normalize_obs"]), c["dataset"].get("reward", "env"),
             json.dumps(c["dataset"].get("env_kwargs") or {}, sort_keys=True)) for c in configs.values()}
    if len(keys) != 1:
        raise LandscapeInputError("the runs use different datasets / observation normalisation / rewards / "
                                  f"environment arguments: {sorted(keys)}")
    (dataset_id, normalize, reward, env_kwargs), = keys
    try:
        dataset = load_dataset(dataset_id, normalize_obs=normalize, reward=reward, env_kwargs=json.loads(env_kwargs))
    except (DatasetError, OSError, ValueError) as e:
        raise LandscapeInputError(f"cannot load the runs' dataset {dataset_id!r}: {e}") from None
    cfg = next(iter(configs.values()))
    lo, hi = dataset.ref_min_score, dataset.ref_max_score
    if cfg.get("ref_min_score") is not None:
        lo, hi = cfg["ref_min_score"], cfg["ref_max_score"]
    make_env = functools.partial(dataset.make_env, eval_env=True)  # as the runs evaluated
    if jax_env:
        try:
            make_env = dataset.make_jax_env(eval_env=True)
        except ValueError as e:
            raise LandscapeInputError(f"--env=jax: {e}") from None
    if reward == "success":  # binary reward: the return counts the steps spent at the goal
        return make_env, lambda r: np.asarray(r, np.float64), "return (steps at the goal)"
    if lo is None or hi is None or lo == hi:
        return make_env, lambda r: np.asarray(r, np.float64), "return"
    return make_env, lambda r: 100.0 * (np.asarray(r, np.float64) - lo) / (hi - lo), "normalised score"


def load_trajectory(workdir: str) -> list[ActorSnapshot]:
    """Every saved actor of a run: the offline steps, then the online steps, in step order.

    The pipeline keeps the last ``ckpt_keep`` checkpoints of each phase (every ``ckpt_every``
    steps and the final one); raise ``ckpt_keep`` when training for a longer trajectory."""
    snaps = [load_actor(workdir, ph, s) for ph in PHASES for s in checkpoint_steps(workdir, ph)]
    if not snaps:
        raise LandscapeInputError(f"{workdir} has no checkpoints")
    return snaps


def common_actors(snapshots: Sequence[ActorSnapshot]) -> tuple[Learner, list[Params]]:
    """One learner that evaluates all the snapshots' actors, and the actors in one layout.

    If every snapshot has the same actor layout, its learner and the actors unchanged. Otherwise
    (Gaussian and deterministic actors mixed) every actor is converted to the deterministic layout
    (the Gaussian's ``log_std`` head dropped; its deterministic action ``tanh(mean)`` is exactly
    the deterministic actor's) and evaluated with a deterministic-actor learner (``td3``) of the
    same network settings. Seed axes are kept."""
    if not snapshots:
        raise ValueError("common_actors needs at least one snapshot")
    first = snapshots[0].learner

    def net_settings(learner):
        return tuple(learner.config.hidden_dims), bool(learner.config.actor_layer_norm)

    for s in snapshots:
        if net_settings(s.learner) != net_settings(first):
            raise LandscapeInputError(
                f"actors differ in network settings (hidden_dims, actor_layer_norm): {net_settings(first)} in "
                f"{snapshots[0].workdir} vs {net_settings(s.learner)} in {s.workdir}; they share no parameter space")
    if len({s.kind for s in snapshots}) == 1:
        return first, [s.actor for s in snapshots]
    actors = [convert_actor(s.actor, s.kind, "deterministic", first.act_dim, 0.0, s.workdir) for s in snapshots]
    hidden, layer_norm = net_settings(first)
    return make_learner("td3", first.obs_dim, first.act_dim, {"hidden_dims": hidden, "actor_layer_norm": layer_norm}), actors
