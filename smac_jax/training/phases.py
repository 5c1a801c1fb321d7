"""The phases of an offline-to-online run and what they share.

:class:`RunContext` holds everything one run needs (data, learners, keys, checkpoints, metrics
log, evaluator, progress bar); :func:`offline_phase`, :func:`start_online` (hand-over or resume)
and :func:`online_phase` are the three steps :func:`smac_jax.training.pipeline.run` calls. Both
phases advance in chunks (:func:`chunk_ends`), one dispatch each, and end every chunk the same
way (:meth:`RunContext.end_chunk`): divergence check, evaluation, checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.data import replay
from smac_jax.errors import ConfigError, DatasetError, DivergenceError, ProtocolError, TransferError
from smac_jax.learners import Learner, make_learner
from smac_jax.learners.handover import describe_transfer, same_params
from smac_jax.runtime import progress_bar
from smac_jax.training.checkpoint import Checkpointer
from smac_jax.training.evaluation import DeviceEvaluator, Evaluator, in_critic_units, make_act_fn, make_value_fn
from smac_jax.training.logger import MetricsLog, make_sinks
from smac_jax.training.online import DeviceCollector, OnlineCollector, make_act_step
from smac_jax.training import vmap_sweep
from smac_jax.training.steps import make_offline_step, unalias

_ADVICE = ("Lower the learning rate, scale the rewards (dataset.reward_scale) or enable layer norm, and start "
           "again with a new --workdir or --overwrite (a non-finite state is never checkpointed).")

#: Key streams of a run, each folded from every seed's key (fixed numbers: changing them changes results).
KEY_STREAMS = {"init": 0, "transfer": 1, "offline": 2, "online": 3}


def eval_env_fn(dataset) -> Callable[[], Any]:
    """Builds the environment the policies are evaluated and fine-tuned in: the dataset's evaluation
    spec where Minari stores one (e.g. AntMaze's fixed start and goal), else its own."""
    return lambda: dataset.make_env(eval_env=True)


def make_evaluator(config, dataset, n_lanes: int, seed_index=None) -> Evaluator | DeviceEvaluator:
    """The run's evaluator: Gymnasium's environments on the host (``eval.env = "gymnasium"``) or
    the JAX-native port of the dataset's environment, every episode in one compiled program
    (``"jax"``)."""
    if config.eval.get("env", "gymnasium") == "jax":
        return DeviceEvaluator(dataset.make_jax_env(eval_env=True), n_lanes, config.eval.episodes,
                               base_seed=config.seed, seed_index=seed_index)
    return Evaluator(eval_env_fn(dataset), n_lanes, config.eval.episodes, base_seed=config.seed,
                     seed_index=seed_index)


def stack_seeds(tree: Any, n: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))).copy(), tree)


def check_finite(metrics: dict, phase: str, learner: Learner, step: int) -> None:
    """Raise :class:`DivergenceError` naming every metric that is not finite for some seed (the
    first with its lanes and values: which one went first cannot be told from one chunk's means)."""
    bad = {k: ~np.isfinite(np.asarray(v)) for k, v in metrics.items()}
    names = [k for k, b in bad.items() if b.any()]
    if names:
        k, b = names[0], bad[names[0]]
        seeds = np.nonzero(b.reshape(b.shape[0], -1).any(1))[0].tolist()
        others = f" (also not finite: {', '.join(map(repr, names[1:]))})" if len(names) > 1 else ""
        raise DivergenceError(
            f"{phase} learner {learner.name!r} diverged: metric {k!r} is not finite at step {step} "
            f"for {_lanes(learner, seeds)} (values {np.asarray(metrics[k]).tolist()}){others}. {_ADVICE}"
        )


def update_counts(states) -> np.ndarray:
    """Every lane's ``state.step`` (the updates its learner has made), on the host."""
    return np.asarray(jax.device_get(states.step)).reshape(-1)


def fetch_chunk(states, metrics: dict) -> tuple[np.ndarray, dict]:
    """What the host checks after a chunk, in one transfer: every lane's ``state.step`` and the
    chunk's metrics."""
    got = jax.device_get({"step": states.step, "metrics": metrics})
    return np.asarray(got["step"]).reshape(-1), got["metrics"]


def check_update_counts(got: np.ndarray, expected: np.ndarray, phase: str, learner: Learner, step: int) -> None:
    """Raise :class:`ProtocolError` unless every lane's ``state.step`` (``got``, from
    :func:`fetch_chunk`) equals ``expected``: a learner's update returns its state with ``step``
    advanced by one, which delays, schedules and the minibatch draws of a resumed run rely on."""
    if not np.array_equal(got, expected):
        show = lambda a: a.tolist() if a.size <= 8 else f"{sorted(set(a.tolist()))[:8]} (over {a.size} lanes)"  # noqa: E731
        raise ProtocolError(f"{phase} learner {learner.name!r}: state.step is {show(got)} at {phase} step {step}, "
                            f"expected {show(expected)}: its update must return the state with step incremented "
                            "by one per call")


def _lanes(learner: Learner, lanes: list[int]) -> str:
    """How a divergence message names lanes: seed indexes, or a vmap_sweep's settings and seeds."""
    names = getattr(learner, "lane_names", None)
    if names:
        return "; ".join(names[i] for i in lanes)
    return f"seed index(es) {lanes}"


@jax.jit
def _finite_per_seed(tree: Any) -> Any:
    """For every leaf: a (seeds,) bool, True where every entry of that seed's slice is finite."""
    return jax.tree.map(lambda x: jnp.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
                        if jnp.issubdtype(x.dtype, jnp.floating) else jnp.ones(x.shape[:1], bool), tree)


def check_finite_state(states: Any, phase: str, learner: Learner, step: int) -> None:
    """Parameters and optimiser state are finite for every seed (checked before each checkpoint)."""
    flags = jax.device_get(_finite_per_seed({"params": states.params, "optimizer state": states.opt_state}))
    for path, ok in jax.tree_util.tree_flatten_with_path(flags)[0]:  # (one transfer for every leaf's flags)
        ok = np.asarray(ok)
        if not ok.all():
            where = "/".join(str(getattr(p, "key", getattr(p, "name", p))) for p in path)
            raise DivergenceError(
                f"{phase} learner {learner.name!r} diverged: {where} is not finite at step {step} for "
                f"{_lanes(learner, np.nonzero(~ok)[0].tolist())}. {_ADVICE}"
            )


def chunk_ends(start: int, stop: int, size: int, every: tuple[int, ...], marks: tuple[int, ...] = ()) -> Iterator[int]:
    """Where each chunk from ``start`` to ``stop`` ends: at most ``size`` steps long, and ending
    at every multiple of each of ``every`` (evaluations, checkpoints) and at each of ``marks``."""
    step = start
    while step < stop:
        end = min(stop, step + size, *((step // e + 1) * e for e in every), *(m for m in marks if m > step))
        yield end
        step = end


def check_env_fits(dataset) -> None:
    """The dataset's environment builds, resets and steps (with the dataset's ``env_kwargs``), and
    takes the data's observation and action layout: a bad environment argument stops the run
    here, not at its first evaluation."""
    obs_dim, act_dim = dataset.transitions.obs.shape[-1], dataset.transitions.action.shape[-1]
    try:
        env = dataset.make_env()
        obs, _ = env.reset(seed=0)
        env_act = env.action_space.shape
        env.step(np.zeros(env_act, np.float32))  # also: the binary reward needs info["success"] online
        env.close()
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001  (gymnasium / the wrappers on a spec that does not fit)
        kwargs = getattr(dataset, "env_kwargs", None)
        given = f" with dataset.env_kwargs={kwargs}" if kwargs else ""
        raise DatasetError(f"{dataset.dataset_id}: its environment cannot be built{given} to match the data "
                           f"({type(e).__name__}: {str(e)[:200]})") from None
    if np.shape(obs) != (obs_dim,) or tuple(env_act) != (act_dim,):
        raise DatasetError(f"{dataset.dataset_id}: the data has observations of {obs_dim} and actions of {act_dim} "
                           f"dimensions, its environment gives {np.shape(obs)} and {tuple(env_act)}")


@dataclasses.dataclass
class RunContext:
    """What the phases of one run share. Built by :meth:`build`; closed by :meth:`close`."""

    config: Any
    workdir: str
    resume: bool
    dataset: Any
    data: Any  # the dataset's transitions on the device
    seeds: list[int]  # each lane's seed (lanes: the seeds, or a vmap_sweep's settings x seeds)
    keys: dict[str, jax.Array]  # KEY_STREAMS name -> (lanes, 2) keys
    off_learner: Learner
    on_learner: Learner
    ckpt: Checkpointer
    log: MetricsLog
    evaluator: Evaluator | DeviceEvaluator
    bar: Any
    ref_scores: tuple[float | None, float | None]
    sweep: Any = None  # the run's vmap_sweep.Sweep, or None
    seed_evaluator: Any = None  # one lane per seed (a vmap_sweep's shared offline phase), made when first needed
    last_eval: float = math.nan
    value_fns: dict = dataclasses.field(default_factory=dict)  # id(learner) -> make_value_fn's

    @classmethod
    def build(cls, config, workdir: str, dataset, resume: bool, progress: bool) -> "RunContext":
        t = dataset.transitions
        obs_dim, act_dim = t.obs.shape[-1], t.action.shape[-1]
        off = make_learner(config.offline.learner, obs_dim, act_dim, config.offline.agent)
        on = make_learner(config.online.learner, obs_dim, act_dim, config.online.agent)
        off.prepare(dataset, workdir, progress)
        on.prepare(dataset, workdir, progress)
        seeds = [config.seed + i for i in range(config.n_seeds)]
        sweep = vmap_sweep.parse(config)
        if sweep is not None:  # settings x seeds lanes (smac_jax.training.vmap_sweep)
            off, on = vmap_sweep.wrap_learners(sweep, config, off, on, t)
            note = vmap_sweep.wide_sweep_note(sweep, int(config.eval.episodes))
            if note and config.eval.get("env", "gymnasium") != "jax":  # on the device it is one program
                print(note, flush=True)
            lane_seeds = [config.seed + j for j in sweep.lane_seed_index]
        else:
            lane_seeds = seeds
        seed_keys = jnp.stack([jax.random.PRNGKey(s) for s in lane_seeds])
        keys = {name: jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(seed_keys) for name, i in KEY_STREAMS.items()}
        _check_hand_over(off, on, keys, sweep)
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.ckpt_keep)
        if sweep is not None:
            log = vmap_sweep.SettingsLog(workdir, config, sweep, seeds)
        else:
            log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), make_sinks(config, workdir, seeds))
        if not resume or (ckpt.latest_step("offline") is None and ckpt.latest_step("online") is None):
            log.truncate(lambda r: False)  # a fresh start (also: --resume with nothing to resume from)
        ref = (dataset.ref_min_score, dataset.ref_max_score)
        if config.ref_min_score is not None:
            ref = (config.ref_min_score, config.ref_max_score)
        return cls(
            config=config, workdir=workdir, resume=resume, dataset=dataset,
            data=jax.device_put(jax.tree.map(jnp.asarray, t)), seeds=lane_seeds, keys=keys, off_learner=off,
            on_learner=on, ckpt=ckpt, log=log, sweep=sweep,
            evaluator=make_evaluator(config, dataset, len(lane_seeds), None if sweep is None else sweep.lane_seed_index),
            bar=progress_bar(total=config.offline.steps + config.online.steps, disable=not progress, unit="step",
                             dynamic_ncols=True),
            ref_scores=ref,
        )

    @property
    def has_scores(self) -> bool:
        """Whether evaluations log a normalised score: a binary-reward task's success rate, or a
        return normalised by reference returns."""
        return self.dataset.reward == "success" or None not in self.ref_scores

    @property
    def score_reference(self) -> dict | None:
        """The reference returns of the normalised score and where they come from (the run's
        config, or the dataset's metadata: for generated datasets the library's own random and
        expert policies, not D4RL's), or None where the score is not a normalised return."""
        if self.dataset.reward == "success" or None in self.ref_scores:
            return None
        source = "config" if self.config.ref_min_score is not None else f"dataset {self.dataset.dataset_id} metadata"
        return {"min": float(self.ref_scores[0]), "max": float(self.ref_scores[1]), "source": source}

    def evaluate(self, phase: str, step: int, act_fn, states, learner: Learner, metrics: dict) -> None:
        """Evaluate every seed's deterministic policy and log one row per seed."""
        # Evaluation episodes are seeded by the evaluation round (phase, ceil(step / eval_every)) and the
        # seed, not by a counter of this process's evaluations, so a resumed run evaluates exactly like an
        # uninterrupted one (another eval_every evaluates a step with other episodes).
        every = self.config[phase].eval_every
        round_index = -(-int(step) // every) + (0 if phase == "offline" else 1_000_000)
        gamma = float(learner.config.get("gamma", 1.0))
        # a vmap_sweep's shared offline phase has one state per seed: each lane reads its seed's
        lane_state = list(range(len(self.seeds)))
        evaluator = self.evaluator
        if jax.tree.leaves(states.params)[0].shape[0] != len(self.seeds):
            lane_state, evaluator = self.sweep.lane_seed_index, self._seed_evaluator()
        eps = evaluator(act_fn, states, round_index, gamma)
        check_finite(metrics, phase, learner, step)
        mean = eps.returns.mean(1)
        value = self.value_estimates(learner, states, eps.first_obs)
        ds = self.config.dataset
        disc = in_critic_units(eps.discounted, eps.lengths, gamma, ds.reward_scale, ds.reward_bias)
        lo, hi = self.ref_scores
        success = eps.success.mean(1)  # per seed: the fraction of episodes that succeeded; NaN if not reported
        rows = []
        for lane, seed in enumerate(self.seeds):
            i = lane_state[lane]
            row = {"phase": phase, "step": int(step), "seed": seed, "eval_return": float(mean[i])}
            if self.sweep is not None:
                row["setting"] = self.sweep.lane_setting[lane]  # picks the setting's log (SettingsLog)
            if not np.isnan(success[i]):
                row["eval_success"] = float(success[i])
            if self.dataset.reward == "success":  # the binary tasks' normalised score: 100 x the success rate
                row["eval_score"] = 100.0 * float(success[i])
            elif self.has_scores:
                row["eval_score"] = float(100.0 * (mean[i] - lo) / (hi - lo))
            if value is not None:
                # Q at the evaluation's start states against the discounted return obtained from them.
                row["eval_discounted_return"] = float(disc[i].mean())
                row["q_start"] = float(value[i].mean())
                row["q_minus_return"] = row["q_start"] - row["eval_discounted_return"]
            row.update({k: float(np.asarray(v)[i]) for k, v in metrics.items()})
            rows.append(row)
        self.log.write(rows)
        self.last_eval = float(mean.mean())

    def value_estimates(self, learner: Learner, states, obs: np.ndarray) -> np.ndarray | None:
        """``learner.value_estimate`` of every seed at ``obs`` (S, n, obs_dim): (S, n), or None
        for a learner without a critic."""
        if "critic" not in states.params:
            return None
        if id(learner) not in self.value_fns:
            self.value_fns[id(learner)] = make_value_fn(learner)
        return np.asarray(self.value_fns[id(learner)](states, jnp.asarray(obs, jnp.float32)))

    def end_chunk(self, phase: str, step: int, act_fn, states, learner: Learner, metrics: dict,
                  checkpoint: Callable[[], tuple[Any, dict]], rate: str) -> None:
        """After a chunk: divergence check, then an evaluation and a checkpoint where they fall due."""
        c = self.config[phase]
        last = step == c.steps
        if metrics:
            check_finite(metrics, phase, learner, step)
        if step % c.eval_every == 0 or last:
            self.evaluate(phase, step, act_fn, states, learner, metrics)
            self.bar.set_postfix({"phase": phase, "eval": f"{self.last_eval:.1f}", "rate": rate})
        if step % c.ckpt_every == 0 or last:
            check_finite_state(states, phase, learner, step)
            tree, meta = checkpoint()
            self.ckpt.save(phase, step, tree, {"step": step, **meta})

    @property
    def offline_lanes(self) -> int:
        """Lanes of the offline phase: every lane, or one per seed when a vmap_sweep sweeps online
        values only (its settings share the offline phase: the first ``n_seeds`` lanes' keys)."""
        if self.sweep is not None and not self.sweep.sweeps_offline:
            return self.sweep.n_seeds
        return len(self.seeds)

    def _seed_evaluator(self) -> Evaluator | DeviceEvaluator:
        if self.seed_evaluator is None:
            self.seed_evaluator = make_evaluator(self.config, self.dataset, self.sweep.n_seeds)
        return self.seed_evaluator

    def close(self) -> None:
        self.bar.close()
        self.evaluator.close()
        if self.seed_evaluator is not None:
            self.seed_evaluator.close()
        self.ckpt.close()
        self.log.close()  # the metric sinks (TensorBoard, W&B)


def _check_hand_over(off: Learner, on: Learner, keys: dict, sweep=None) -> None:
    """Fail before any training if the pair cannot be bridged."""
    abstract_off = jax.eval_shape(off.init, keys["init"][0])
    if sweep is not None:
        abstract_off = jax.eval_shape(lambda s: vmap_sweep.handover_source(sweep, s, on, lanes=False), abstract_off)
    try:
        jax.eval_shape(lambda k, s: on.transfer(k, s, off), keys["transfer"][0], abstract_off)
    except (TransferError, ConfigError):  # ConfigError: e.g. a learner whose model is not prepared yet
        raise
    except KeyError as e:  # a transfer of one's own reading a group (or field) the source lacks
        groups = ", ".join(sorted(abstract_off.params))
        raise TransferError(f"{off.name} -> {on.name}: hand-over failed: it reads {e.args[0] if e.args else e!r}, "
                            f"which {off.name}'s state lacks (its parameter groups: {groups}); a learner that needs a "
                            "group of its source refuses others in check_start") from None
    except Exception as e:  # a learner without a custom transfer hitting an incompatible layout
        raise TransferError(f"{off.name} -> {on.name}: hand-over failed: {e}") from e


def _rate(done: int, t0: float) -> str:
    return f"{done / max(time.time() - t0, 1e-9):.0f}/s"


# ------------------------------------------------------------------------------------------------
def offline_phase(ctx: RunContext) -> Any:
    """Pre-train on the dataset (or resume); returns the final offline states, or None when an
    online checkpoint exists to resume from (the offline phase is then over)."""
    c, learner = ctx.config.offline, ctx.off_learner
    if ctx.resume and ctx.ckpt.latest_step("online") is not None:
        return None
    n = ctx.offline_lanes
    states = unalias(learner.init_lanes(ctx.keys["init"][:n]))
    step = 0
    if ctx.resume and ctx.ckpt.latest_step("offline") is not None:
        states, meta = ctx.ckpt.restore("offline", states)
        states, step = unalias(states), int(meta["step"])
        ctx.log.truncate(lambda r: r["phase"] == "offline" and r["step"] <= step)
        done = " (finished)" if step >= c.steps else ""  # a sweep's fine-tune starts from its pretrain's
        print(f"[smac_jax] resumed offline phase at step {step}{done} from its checkpoint")
    elif c.steps == 0:  # nothing to train: evaluate and save the initial state
        act = make_act_fn(learner)
        ctx.evaluate("offline", 0, act, states, learner, {})
        check_finite_state(states, "offline", learner, 0)
        ctx.ckpt.save("offline", 0, states, {"step": 0})
        return states
    update = make_offline_step(learner, c.scan_steps)
    act = make_act_fn(learner)
    ctx.bar.update(step)
    t0, start = time.time(), step
    counts = update_counts(states)
    for end in chunk_ends(step, c.steps, c.scan_steps, (c.eval_every, c.ckpt_every)):
        states, metrics = update(states, ctx.data, ctx.keys["offline"][:n], step)
        ctx.bar.update(end - step)
        counts = counts + (end - step)
        step = end
        got, metrics = fetch_chunk(states, metrics)
        check_update_counts(got, counts, "offline", learner, step)
        ctx.end_chunk("offline", step, act, states, learner, metrics, lambda: (states, {}),
                      _rate(step - start, t0))
    return states


def make_collector(ctx: RunContext) -> OnlineCollector | DeviceCollector:
    """The online environments, one per seed: Gymnasium's on the host, or (``online.env="jax"``)
    their JAX-native ports on the device."""
    d = ctx.config.dataset
    if ctx.config.online.env == "jax":
        return DeviceCollector(ctx.dataset.make_jax_env(eval_env=True), ctx.keys["online"], d.reward_scale,
                               d.reward_bias)
    return OnlineCollector(eval_env_fn(ctx.dataset), ctx.seeds, 0, d.reward_scale, d.reward_bias)


def start_online(ctx: RunContext, off_states: Any):
    """The online phase's starting point: the hand-over from the offline states, or the last
    online checkpoint when resuming. Returns (states, replay buffers, collector, step)."""
    c, learner = ctx.config.online, ctx.on_learner
    data_np = ctx.dataset.transitions
    obs_dim, act_dim = data_np.obs.shape[-1], data_np.action.shape[-1]
    buffers = stack_seeds(replay.init_replay(c.replay.init, data_np, obs_dim, act_dim, c.replay.capacity,
                                             c.replay.top_n), len(ctx.seeds))
    collector = make_collector(ctx)
    if off_states is not None:  # the hand-over (docs/algorithms.md, "Offline-to-online protocol")
        if ctx.sweep is not None:  # one offline state per lane, with the lane's values
            off_states = vmap_sweep.handover_source(ctx.sweep, off_states, learner)
        states = jax.jit(jax.vmap(lambda k, s: learner.transfer(k, s, ctx.off_learner)))(ctx.keys["transfer"], off_states)
        if not ctx.config.transfer_reset_optimizer:
            states = _carry_optimizer_state(states, off_states)
        lane0 = lambda s: jax.tree.map(lambda x: x[0], s.params)  # noqa: E731
        print(f"[smac_jax] hand-over {ctx.off_learner.name} -> {learner.name}: "
              f"{describe_transfer(lane0(off_states), lane0(states))}", flush=True)
        return unalias(states), buffers, collector, 0
    template = {"states": learner.init_lanes(ctx.keys["init"]), "buffers": buffers}
    restored, meta = ctx.ckpt.restore("online", template)
    step = int(meta["step"])
    collector.load_state_dict(meta["collector"])  # the environments exactly as they were
    ctx.log.truncate(lambda r: r["phase"] == "offline" or r["step"] <= step)
    ctx.bar.update(ctx.config.offline.steps + step)
    print(f"[smac_jax] resumed online phase at environment step {step}{' (finished)' if step >= c.steps else ''}")
    return unalias(restored["states"]), unalias(restored["buffers"]), collector, step


def online_phase(ctx: RunContext, states: Any, buffers: Any, collector: OnlineCollector | DeviceCollector,
                 step: int) -> None:
    """Fine-tune online: chunks of environment steps, each one dispatch (the environments are
    stepped from inside the program), ending at every evaluation, checkpoint and learning_starts."""
    c, learner = ctx.config.online, ctx.on_learner
    act = make_act_fn(learner)
    if step == 0:
        ctx.evaluate("online", 0, act, states, learner, {})
    mixing = c.replay.mixing_ratio if c.replay.init == "mix" else None
    hold_until = c.learning_starts + c.critic_warmup if c.critic_warmup else 0
    loops = {training: collector.make_loop(learner, c.utd, mixing, training, c.lean_host_call, hold_until)
             for training in (False, True)}
    actions = make_act_step(learner)(states, collector.obs, ctx.keys["online"], step)
    t0, start = time.time(), step
    metrics: dict = {}
    every = (c.eval_every, c.ckpt_every) + ((learner.host_update_every,) if learner.host_update_every else ())
    counts = update_counts(states)
    for end in chunk_ends(step, c.steps, c.scan_steps, every, (c.learning_starts,)):
        training = step >= c.learning_starts  # environment step s trains iff s > learning_starts
        states, buffers, actions, m = loops[training](states, buffers, actions, ctx.data, ctx.keys["online"],
                                                      step, end - step)
        ctx.bar.update(end - step)
        counts = counts + (end - step) * c.utd * training
        step = end
        got, m = fetch_chunk(states, m)
        check_update_counts(got, counts, "online", learner, step)
        metrics = m or metrics
        if learner.host_update_every and step % learner.host_update_every == 0:
            states = learner.periodic_host_update(states, buffers, step)
        # Evaluations log the last chunk's training metrics (none before learning starts), and for
        # tasks that report success the training episodes finished and succeeded so far.
        ctx.end_chunk("online", step, act, states, learner, {**metrics, **collector.success_counts()},
                      lambda: ({"states": states, "buffers": buffers}, {"collector": collector.state_dict()}),
                      _rate(step - start, t0))
    collector.close()


def _carry_optimizer_state(on_states, off_states):
    """``transfer_reset_optimizer=False``: each group's offline optimiser state goes with its
    parameters, i.e. where the hand-over took the group over unchanged (not ACA's rebuilt critic or
    a temperature reset to its initial value) and the optimiser states have the same layout."""
    opt = dict(on_states.opt_state)
    for g, s in off_states.opt_state.items():
        if g in opt and jax.tree.structure(s) == jax.tree.structure(opt[g]) and all(
            a.shape == b.shape for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(opt[g]))
        ) and same_params(on_states.params.get(g), off_states.params.get(g)):
            opt[g] = s
    return on_states.replace(opt_state=opt)

