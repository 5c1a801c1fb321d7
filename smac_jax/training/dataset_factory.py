"""A D4RL-style dataset factory for any Gymnasium environment with a Box action space.

``generate_datasets(env_id, kinds)`` trains the library's own SAC online (one seed), then writes
real Minari datasets ``{namespace}/{env}/{kind}-v0``:

* ``random``: a uniform-random policy;
* ``medium``: the first training snapshot whose evaluation return reaches
  ``ref_min + medium_fraction * (ref_max - ref_min)`` (default a third of the way from the random
  policy's return to the expert's, D4RL's "about a third of the expert"). The run is evaluated
  every ``eval_every`` steps and its actor kept every ``snapshot_every`` steps; the kept actors
  between the last evaluation below the target and the first above it are evaluated in turn, so
  the snapshot is found to within ``snapshot_every`` steps of where the run crossed the target;
* ``medium-replay``: every transition of the training run up to that snapshot;
* ``expert``: the final policy.

``random``, ``medium`` and ``expert`` are rolled out (stochastic policy, as D4RL) through
``minari.DataCollector``; ``medium-replay`` is the recorded training stream, written with
``minari.create_dataset_from_buffers`` because it is only known to end at the medium snapshot after
training has finished. Every dataset's metadata carries ``ref_min_score`` (the random policy's mean
return) and ``ref_max_score`` (the expert's deterministic mean return). Reproducible from ``seed``.
Observations and actions are stored in the environment's own spaces (the loader flattens and
rescales them).
"""
from __future__ import annotations

import functools
import inspect
import json
import re
import warnings
from collections.abc import Callable, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
import minari
import numpy as np
from gymnasium import spaces
from minari.data_collector import EpisodeBuffer

from smac_jax.data import replay
from smac_jax.data.dataset import check_dataset_id
from smac_jax.envs import gym_make
from smac_jax.errors import DatasetError
from smac_jax.learners import make_learner
from smac_jax.learners.base import TrainState
from smac_jax.runtime import progress_bar
from smac_jax.training.online import make_act_step, make_online_loop
from smac_jax.training.phases import chunk_ends
from smac_jax.training.steps import unalias
from smac_jax.types import Transitions

KINDS = ("random", "medium", "medium-replay", "expert")


def dataset_id(env_id: str, kind: str, namespace: str = "smac_jax") -> str:
    name = env_id.split("/")[-1].split("-v")[0].lower()
    return f"{namespace}/{name}/{kind}-v0"


#: The generator settings a dataset's description records (``Recipe: field=value ...``), so that a
#: launch script can tell a dataset made with other settings from the one its task would generate.
RECIPE_FIELDS = ("env", "seed", "train_steps", "eval_every", "snapshot_every", "eval_episodes", "learning_starts",
                 "n_transitions", "medium_fraction", "agent_overrides")


def recipe(kind: str, **settings) -> dict[str, str]:
    """The recorded settings of a ``kind`` dataset generated with ``settings`` (missing ones take
    ``generate_datasets``' defaults), as strings; ``n_transitions`` only for the rolled-out kinds
    (``medium-replay`` is the training stream up to the medium snapshot)."""
    unknown = sorted(set(settings) - set(RECIPE_FIELDS) - {"namespace", "overwrite", "kinds"})
    if "env" not in settings:
        raise DatasetError("dataset factory: a recipe needs the environment id (env)")
    if unknown:
        raise DatasetError(f"dataset factory: unknown setting(s) {unknown}; known: {list(RECIPE_FIELDS)}")
    defaults = _GENERATE_DEFAULTS
    out = {"env": str(settings["env"])}
    for f in RECIPE_FIELDS[1:]:
        v = settings.get(f, defaults[f])
        if f == "n_transitions":
            if kind == "medium-replay":
                continue
            v = v or settings.get("train_steps", defaults["train_steps"])
        if f == "agent_overrides":
            if not v:
                continue
            v = json.dumps(dict(v), sort_keys=True, separators=(",", ":"), default=str)
        elif f == "medium_fraction":
            v = f"{float(v):.6g}"
        else:
            v = str(int(v))
        out[f] = v
    return out


def recorded_recipe(description: str | None) -> dict[str, str] | None:
    """The settings a generated dataset's description records, or None (a dataset from elsewhere,
    or one written before descriptions recorded them)."""
    m = re.search(r"Recipe: (.*)\.$", description or "")
    if m is None:
        return None
    return dict(item.split("=", 1) for item in m.group(1).split(" ") if "=" in item)


@functools.cache
def _jit_act(learner, deterministic: bool):
    return jax.jit(lambda st, o, k: learner.act(st, o, k, deterministic))


class _Policy:
    """Maps raw observations to raw actions with a (flattening, rescaling) jitted actor."""

    def __init__(self, learner, state, space_in: spaces.Space, space_out: spaces.Box, deterministic: bool):
        self.learner, self.state = learner, state
        self.space_in, self.low, self.high = space_in, space_out.low, space_out.high
        self._act = _jit_act(learner, deterministic)

    def __call__(self, obs, key):
        flat = spaces.flatten(self.space_in, obs).astype(np.float32)
        a = np.asarray(self._act(self.state, flat, key))
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(self.low.dtype)


def _evaluate(env: gym.Env, policy, episodes: int, seed: int) -> float:
    rets = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, ret = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs, jax.random.PRNGKey(ep)))
            ret += float(r)
            done = term or trunc
        rets.append(ret)
    return float(np.mean(rets))


def _snapshot_return(learner, env: gym.Env, state, episodes: int, seed: int) -> float:
    """A training snapshot's evaluation return: its deterministic actor on ``episodes`` episodes
    from the run's evaluation seeds (the same for every snapshot, so returns compare)."""
    policy = _Policy(learner, state, env.observation_space, env.action_space, True)
    return _evaluate(env, policy, episodes, seed + 7)


def _random_return(env: gym.Env, episodes: int, seed: int) -> float:
    env.action_space.seed(seed)
    return _evaluate(env, lambda o, k: env.action_space.sample(), episodes, seed)


def _collect(env_id: str, policy_fn, n_steps: int, seed: int, ds_id: str, meta: dict, desc: str,
             before_write=lambda ds_id: None):
    """Roll ``policy_fn`` through a ``minari.DataCollector`` for whole episodes, >= n_steps steps
    (``before_write(ds_id)`` runs once they are collected, before the dataset is written)."""
    env = minari.DataCollector(gym_make(env_id), record_infos=False, data_format="hdf5")
    key = jax.random.PRNGKey(seed)
    steps, ep = 0, 0
    with progress_bar(total=n_steps, desc=desc, leave=False) as bar:
        while steps < n_steps:
            obs, _ = env.reset(seed=seed + ep)
            done = False
            while not done:
                key, k = jax.random.split(key)
                obs, _, term, trunc, _ = env.step(policy_fn(obs, k))
                done = term or trunc
                steps += 1
                bar.update(1)
            ep += 1
    before_write(ds_id)
    ds = env.create_dataset(dataset_id=ds_id, eval_env=env_id, **meta)
    env.close()
    return ds


class SuccessInfo(minari.StepDataCallback):
    """A ``minari.DataCollector`` step callback that records, of each step's info, only
    ``success`` (False at a reset, whose info has none): what a binary-reward task
    (``dataset.reward = "success"``) reads from a dataset."""

    def __call__(self, env, **kwargs):
        data = super().__call__(env, **kwargs)
        data["info"] = {"success": bool(data["info"].get("success", False))}
        return data


def random_episodes_dataset(env: gym.Env, dataset_id: str, episodes: int, record_success: bool = False,
                            collector_kwargs: dict | None = None, **create_kwargs):
    """A Minari dataset (real HDF5 format) of ``episodes`` uniform-random episodes of ``env``:
    episode ``i`` reset with seed ``i``, actions from the action space seeded 0. ``record_success``
    stores each step's ``success`` info (:class:`SuccessInfo`); ``collector_kwargs`` go to
    ``minari.DataCollector``, ``create_kwargs`` to its ``create_dataset``."""
    kwargs = dict(step_data_callback=SuccessInfo, record_infos=True) if record_success else {}
    collector = minari.DataCollector(env, data_format="hdf5", **{**kwargs, **(collector_kwargs or {})})
    collector.action_space.seed(0)
    for ep in range(episodes):
        collector.reset(seed=ep)
        done = False
        while not done:
            _, _, term, trunc, _ = collector.step(collector.action_space.sample())
            done = term or trunc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari's advice on a missing author / description
        dataset = collector.create_dataset(dataset_id=dataset_id, **create_kwargs)
    collector.close()
    return dataset


class _TrainingEnv:
    """The host side of the factory's SAC run (``make_online_loop``'s ``env_step``): it applies the
    program's action, or a uniform-random one for the first ``learning_starts`` steps, records
    every episode in the environment's own spaces, and resets a finished episode with seed
    ``seed + 100_000 + episode``."""

    def __init__(self, env: gym.Env, seed: int, learning_starts: int):
        self.env, self.seed, self.learning_starts = env, seed, learning_starts
        self.obs_space, self.space = env.observation_space, env.action_space
        self.low, self.high = self.space.low, self.space.high
        self.space.seed(seed)
        self.obs, _ = env.reset(seed=seed)
        self.t, self.n_ep = 0, 0
        self.episodes: list[dict] = []
        self.cur = self._new_episode(self.obs)
        self._dummy = jax.tree.map(lambda x: np.asarray(x[:1]), replay.empty_buffer(1, 1, 1).data)

    @staticmethod
    def _new_episode(obs) -> dict:
        return {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}

    def flat(self, obs) -> np.ndarray:
        return spaces.flatten(self.obs_space, obs).astype(np.float32)

    def __call__(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.t += 1
        if self.t <= self.learning_starts:
            a_unit = 2.0 * (self.space.sample() - self.low) / (self.high - self.low) - 1.0
        else:
            a_unit = actions[0]
        a_raw = (self.low + (a_unit + 1.0) * 0.5 * (self.high - self.low)).astype(self.space.dtype)
        next_obs, r, term, trunc, _ = self.env.step(a_raw)
        for k, v in zip(("actions", "rewards", "terminations", "truncations", "observations"),
                        (a_raw, float(r), bool(term), bool(trunc), next_obs)):
            self.cur[k].append(v)
        d = self._dummy
        tr = Transitions(
            obs=self.flat(self.obs)[None], action=np.asarray(a_unit, np.float32)[None], reward=np.float32([r]),
            next_obs=self.flat(next_obs)[None], terminated=np.float32([term]), truncated=np.float32([trunc]),
            episode=np.int32([self.n_ep]), rtg=d.rtg, mc_return=d.mc_return, traj_return=d.traj_return,
        )
        if term or trunc:
            self.episodes.append(self.cur)
            self.n_ep += 1
            next_obs, _ = self.env.reset(seed=self.seed + 100_000 + self.n_ep)
            self.cur = self._new_episode(next_obs)
        self.obs = next_obs
        return replay.pack(tr, np), self.flat(next_obs)[None]


def _train_sac(env_id: str, train_steps: int, eval_every: int, eval_episodes: int, seed: int,
               learning_starts: int, agent_overrides: dict | None, chunk: int = 1_000,
               snapshot_every: int | None = None):
    """Online SAC on ``env_id`` with one seed, through the library's online loop (``chunk``
    environment steps per dispatch); returns (learner, snapshots, episodes recorded, env).

    A snapshot ``(step, eval return or None, actor state)`` is kept every ``snapshot_every`` steps
    (default ``eval_every``) and at the end; those at multiples of ``eval_every`` and the last are
    evaluated, the others only on demand (:func:`medium_snapshot`). An actor state holds only the
    actor's parameters, on the host."""
    snapshot_every = snapshot_every or eval_every
    raw = gym_make(env_id)
    if not isinstance(raw.action_space, spaces.Box):
        raise DatasetError(f"the dataset factory needs a Box action space; {env_id} has {raw.action_space}")
    obs_space, act_space = raw.observation_space, raw.action_space
    obs_dim, act_dim = spaces.flatdim(obs_space), int(np.prod(act_space.shape))
    learner = make_learner("sac", obs_dim, act_dim, agent_overrides)
    key = jax.random.PRNGKey(seed)
    seed_keys = key[None]
    states = unalias(jax.vmap(learner.init)(jax.random.fold_in(key, 0)[None]))
    buffers = jax.tree.map(lambda x: x[None], replay.empty_buffer(obs_dim, act_dim, train_steps))
    env = _TrainingEnv(raw, seed, learning_starts)
    loops = {train: make_online_loop(learner, env, 1, 1, None, train) for train in (False, True)}
    actions = make_act_step(learner)(states, jnp.asarray(env.flat(env.obs))[None], seed_keys, 0)
    eval_env = gym_make(env_id)
    snapshots = []  # (step, eval return or None, actor state)
    step = 0
    with progress_bar(total=train_steps, desc=f"SAC on {env_id}", leave=False) as bar:
        for end in chunk_ends(0, train_steps, chunk, (eval_every, snapshot_every), (learning_starts, train_steps)):
            loop = loops[step >= learning_starts]  # steps after learning_starts update
            states, buffers, actions, _ = loop(states, buffers, actions, None, seed_keys, step, end - step)
            bar.update(end - step)
            step = end
            if step % eval_every and step % snapshot_every and step != train_steps:
                continue
            st = actor_state(jax.tree.map(lambda x: np.asarray(x[0]), states.params["actor"]))
            ret = None
            if step % eval_every == 0 or step == train_steps:
                ret = _snapshot_return(learner, eval_env, st, eval_episodes, seed)
            snapshots.append((step, ret, st))
    episodes = env.episodes
    if env.cur["actions"]:
        env.cur["truncations"][-1] = True
        episodes.append(env.cur)
    return learner, snapshots, episodes, raw


def actor_state(actor) -> TrainState:
    """A train state holding only an actor's parameters (what ``learner.act`` reads)."""
    return TrainState(params={"actor": actor}, opt_state={}, step=np.zeros((), np.int32))


def medium_snapshot(snaps: Sequence[tuple], target: float, ref_max: float, snapshot_every: int,
                    evaluate: Callable[[tuple], float] | None = None) -> tuple[tuple, str | None]:
    """The medium snapshot and a warning when it overshoots.

    ``snaps`` are ``(step, eval return or None, ...)`` in step order, the last evaluated. The first
    evaluated snapshot whose return reaches ``target`` brackets the crossing with the evaluated one
    before it; the unevaluated snapshots in between are evaluated in order with ``evaluate``
    (``snapshot -> return``) and the first that reaches the target is the medium one (else the
    bracketing one; with no snapshot at the target, the last). The returned snapshot carries its
    return. The warning says when its return is closer to the expert's ``ref_max`` than to the
    target: the training run improved faster than the snapshots were taken (``snapshot_every``),
    and the "medium" data would be near-expert."""
    done = [i for i, s in enumerate(snaps) if s[1] is not None]
    hit = next((i for i in done if snaps[i][1] >= target), None)
    if hit is None:
        med = snaps[done[-1]]
    else:
        med = snaps[hit]
        before = max((i for i in done if i < hit), default=-1)
        if evaluate is not None:
            for s in snaps[before + 1:hit]:
                ret = float(evaluate(s))
                if ret >= target:
                    med = (s[0], ret, *s[2:])
                    break
    if ref_max > target and med[1] - target > 0.5 * (ref_max - target):
        share = 100.0 * (med[1] - target) / (ref_max - target)
        return med, (f"the first snapshot at or above the medium target ({target:.1f}) returns {med[1]:.1f}, "
                     f"{share:.0f}% of the way from the target to the expert: the medium data are closer to "
                     f"expert than to medium; keep snapshots more often (snapshot_every, now {snapshot_every})")
    return med, None


def generate_datasets(
    env_id: str,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    train_steps: int = 100_000,
    eval_every: int = 5_000,
    snapshot_every: int = 1_000,
    eval_episodes: int = 5,
    learning_starts: int = 1_000,
    n_transitions: int | None = None,
    medium_fraction: float = 1.0 / 3.0,
    namespace: str = "smac_jax",
    overwrite: bool = False,
    agent_overrides: dict | None = None,
) -> dict[str, str]:
    """Train SAC on ``env_id`` and write the requested dataset kinds; returns {kind: dataset id}.

    ``n_transitions`` (default ``train_steps``) is the size of the rolled-out kinds. The run is
    evaluated every ``eval_every`` steps; its actor is kept every ``snapshot_every`` steps (on the
    host: ``train_steps / snapshot_every`` copies of the actor's parameters), and the snapshots
    between the last evaluation below the medium target and the first above it are evaluated to
    find the medium one.
    """
    for name, v in (("train_steps", train_steps), ("eval_every", eval_every), ("snapshot_every", snapshot_every),
                    ("eval_episodes", eval_episodes)):
        if int(v) < 1:
            raise DatasetError(f"dataset factory: {name} must be >= 1, got {v}")
    if int(learning_starts) < 0:
        raise DatasetError(f"dataset factory: learning_starts must be >= 0, got {learning_starts}")
    if int(train_steps) <= int(learning_starts):
        raise DatasetError(f"dataset factory: train_steps ({train_steps}) must exceed learning_starts "
                           f"({learning_starts}): SAC makes no update before learning_starts, so the expert "
                           "(whose return is the normalised score's 100) and the medium policy would be untrained")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise DatasetError(f"unknown dataset kind(s) {bad}; the generator writes {list(KINDS)}")
    if len(set(kinds)) < len(kinds):
        raise DatasetError(f"dataset kinds {list(kinds)} name a kind twice")
    try:  # an environment that cannot be made fails here, before anything is trained or deleted
        gym_make(env_id).close()
    except gym.error.Error as e:
        raise DatasetError(f"dataset factory: cannot make environment {env_id!r}: {e}") from None
    ids = {k: dataset_id(env_id, k, namespace) for k in kinds}
    for i in ids.values():
        check_dataset_id(i, f"namespace {namespace!r}: the dataset id")
    local = minari.list_local_datasets()
    for k, i in ids.items():
        if i in local and not overwrite:
            made_from = (recorded_recipe(local[i].get("description")) or {}).get("env")
            if made_from is not None and made_from != env_id:
                raise DatasetError(f"dataset {i} already exists, generated from {made_from}, not {env_id} (ids do not "
                                   "carry the environment's version): pass another namespace (--namespace) to keep "
                                   "both, or overwrite=True (--overwrite) to replace it")
            raise DatasetError(f"dataset {i} already exists; pass overwrite=True (--overwrite) to replace it")

    def replace(i):  # an existing dataset is deleted only when its replacement is about to be written
        if i in local:
            minari.delete_dataset(i)

    n_transitions = n_transitions or train_steps

    learner, snaps, episodes, raw = _train_sac(env_id, train_steps, eval_every, eval_episodes, seed,
                                               learning_starts, agent_overrides, snapshot_every=snapshot_every)
    obs_space, act_space = raw.observation_space, raw.action_space
    eval_env = gym_make(env_id)
    ref_min = _random_return(eval_env, max(eval_episodes, 10), seed + 11)
    expert_state = snaps[-1][2]
    ref_max = _evaluate(eval_env, _Policy(learner, expert_state, obs_space, act_space, True), max(eval_episodes, 10), seed + 13)
    if not ref_max > ref_min:
        raise DatasetError(
            f"{env_id}: the trained expert's return {ref_max:.1f} is not above the random policy's {ref_min:.1f}, "
            f"so normalised scores would be meaningless; nothing was written. Train the expert longer "
            f"(train_steps, now {train_steps}) or with other SAC settings (agent_overrides)")
    target = ref_min + medium_fraction * (ref_max - ref_min)
    evaluate = lambda snap: _snapshot_return(learner, eval_env, snap[2], eval_episodes, seed)
    med, warning = medium_snapshot(snaps, target, ref_max, snapshot_every, evaluate)
    print(f"[smac_jax] {env_id}: random return {ref_min:.1f}, expert return {ref_max:.1f}; medium snapshot "
          f"at step {med[0]} (eval return {med[1]:.1f}, target {target:.1f})")
    if warning and {"medium", "medium-replay"} & set(kinds):
        print(f"[smac_jax] warning: {env_id}: {warning}")

    common = dict(algorithm_name="smac_jax SAC", ref_min_score=ref_min, ref_max_score=ref_max,
                  author="smac_jax dataset factory", code_permalink="https://github.com/smac-jax/smac_jax")
    settings = dict(env=env_id, seed=seed, train_steps=train_steps, eval_every=eval_every, snapshot_every=snapshot_every,
                    eval_episodes=eval_episodes, learning_starts=learning_starts, n_transitions=n_transitions,
                    medium_fraction=medium_fraction, agent_overrides=agent_overrides)
    for kind in kinds:
        rec = " ".join(f"{k}={v}" for k, v in recipe(kind, **settings).items())
        desc = (f"D4RL-style {kind} dataset for {env_id} generated by smac_jax (seed {seed}, SAC trained "
                f"{train_steps} steps; medium snapshot at step {med[0]}). Recipe: {rec}.")
        if kind == "medium-replay":
            buf = []
            steps = 0
            for ep in episodes:
                if steps >= med[0]:
                    break
                n = min(len(ep["actions"]), med[0] - steps)
                truncs = list(ep["truncations"][:n])
                if n < len(ep["actions"]) and not ep["terminations"][n - 1]:
                    truncs[-1] = True  # the stream is cut at the medium snapshot
                buf.append(EpisodeBuffer(
                    id=len(buf),
                    observations=jax.tree.map(lambda *xs: np.stack(xs), *ep["observations"][: n + 1]),
                    actions=np.stack(ep["actions"][:n]),
                    rewards=list(ep["rewards"][:n]),
                    terminations=list(ep["terminations"][:n]),
                    truncations=truncs,
                ))
                steps += n
            replace(ids[kind])
            minari.create_dataset_from_buffers(
                ids[kind], buf, env=env_id, eval_env=env_id, description=desc, data_format="hdf5", **common
            )
        else:
            if kind == "random":
                space = gym_make(env_id).action_space
                space.seed(seed)
                fn = lambda o, k, space=space: space.sample()
            else:
                st = expert_state if kind == "expert" else med[2]
                fn = _Policy(learner, st, obs_space, act_space, deterministic=False)
            _collect(env_id, fn, n_transitions, seed + KINDS.index(kind) * 1_000_000, ids[kind],
                     dict(description=desc, **common), desc=f"{kind} rollouts", before_write=replace)
    return ids


_GENERATE_DEFAULTS = {k: p.default for k, p in inspect.signature(generate_datasets).parameters.items()}


def ensure_dataset(dataset_config) -> None:
    """Generate the configured dataset if it is not local and ``dataset.generate`` is set (an
    announced step of the launch scripts; ``pipeline.run`` itself only loads)."""
    from smac_jax.data.dataset import load_dataset

    dc = dataset_config
    if not dc.generate:
        return
    local = minari.list_local_datasets()
    if dc.id in local:
        _warn_other_recipe(dc, local[dc.id].get("description"))
        return
    want = dataset_id(dc.generate_env, dc.generate_kind)
    if want != dc.id:
        raise DatasetError(f"dataset.id={dc.id!r} is not local, and the generator writes {dc.generate_env} "
                           f"{dc.generate_kind!r} as {want!r}; set dataset.id to that, or make the dataset yourself")
    print(f"[smac_jax] dataset {dc.id!r} is not local: generating it from {dc.generate_env} "
          f"(SAC trained {dc.generate_kwargs.get('train_steps', 100_000)} steps, seed {dc.generate_seed}) ...")
    generate_datasets(dc.generate_env, kinds=[dc.generate_kind], seed=dc.generate_seed, **dict(dc.generate_kwargs))
    print(f"[smac_jax] dataset {dc.id!r}: {load_dataset(dc.id).describe()}")


def _warn_other_recipe(dc, description: str | None) -> None:
    """One warning line when a local dataset the config would generate was made with other settings
    (``make_dataset.py`` with a small ``--n_transitions`` writes the id a task loads)."""
    have = recorded_recipe(description)
    if have is None or have.get("env") != dc.generate_env:  # not the generator's dataset for this config
        return
    want = recipe(dc.generate_kind, env=dc.generate_env, seed=dc.generate_seed, **dict(dc.generate_kwargs))
    diff = [k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    if diff:
        fmt = lambda r: ", ".join(f"{k}={r.get(k, 'unset')}" for k in diff)
        print(f"[smac_jax] warning: dataset {dc.id!r} was generated with {fmt(have)}, not this config's "
              f"{fmt(want)}; training on it as it is (replace it with experiments/make_dataset.py --overwrite "
              f"and those settings to get the config's dataset)", flush=True)
