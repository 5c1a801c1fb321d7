"""The offline-to-online pipeline: offline phase -> transfer -> online phase (docs/algorithms.md,
"Offline-to-online protocol").

``run(config, workdir, resume=False)`` is what ``experiments/o2o.py`` calls. Every state carries a
leading seed axis; one dispatch runs ``scan_steps`` fused updates for every seed (offline) or one
environment step's insert + updates + action for every seed (online).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from smac_jax.analysis.metrics import transfer_drop
from smac_jax.data import replay
from smac_jax.learners import (
    ConfigError,
    Learner,
    TransferError,
    make_learner,
    resolve_config,
)
from smac_jax.training.checkpoint import Checkpointer
from smac_jax.training.evaluation import Evaluator, make_act_fn
from smac_jax.training.logger import MetricsLog, plot_evaluations
from smac_jax.training.online import OnlineCollector
from smac_jax.training.steps import (
    make_act_step,
    make_offline_step,
    make_online_loop,
    unalias,
)


from smac_jax.errors import DatasetError, DivergenceError, WorkdirError  # noqa: E402,F401  (re-exported)


def stack_seeds(tree: Any, n: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))).copy(), tree)


_ADVICE = ("Lower the learning rate, scale the rewards (dataset.reward_scale) or enable layer norm; "
           "the checkpoints written so far are intact, and --resume continues from the last one.")


def check_finite(metrics: dict, phase: str, learner: Learner, step: int) -> None:
    for k, v in metrics.items():
        v = np.asarray(v)
        bad = ~np.isfinite(v)
        if bad.any():
            seeds = np.nonzero(bad.reshape(bad.shape[0], -1).any(1))[0].tolist()
            raise DivergenceError(
                f"{phase} learner {learner.name!r} diverged: metric {k!r} is not finite at step {step} "
                f"for seed index(es) {seeds} (values {v.tolist()}). {_ADVICE}"
            )


@jax.jit
def _finite_per_seed(tree: Any) -> Any:
    """For every leaf: a (seeds,) bool, True where every entry of that seed's slice is finite."""
    return jax.tree.map(lambda x: jnp.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
                        if jnp.issubdtype(x.dtype, jnp.floating) else jnp.ones(x.shape[:1], bool), tree)


def check_finite_state(states: Any, phase: str, learner: Learner, step: int) -> None:
    """Parameters and optimiser state are finite for every seed (checked before each checkpoint)."""
    flags = _finite_per_seed({"params": states.params, "optimizer state": states.opt_state})
    for path, ok in jax.tree_util.tree_flatten_with_path(flags)[0]:
        ok = np.asarray(ok)
        if not ok.all():
            where = "/".join(str(getattr(p, "key", getattr(p, "name", p))) for p in path)
            raise DivergenceError(
                f"{phase} learner {learner.name!r} diverged: {where} is not finite at step {step} for seed "
                f"index(es) {np.nonzero(~ok)[0].tolist()}. {_ADVICE}"
            )


def validate_config(config: ml_collections.ConfigDict) -> None:
    def need(cond, msg):
        if not cond:
            raise ConfigError(msg)

    need(config.n_seeds >= 1, f"n_seeds must be >= 1, got {config.n_seeds}")
    need(config.eval.episodes >= 1, f"eval.episodes must be >= 1, got {config.eval.episodes}")
    need(config.ckpt_keep >= 1, f"ckpt_keep must be >= 1, got {config.ckpt_keep}")
    off, on = config.offline, config.online
    for name, ph in (("offline", off), ("online", on)):
        need(ph.steps >= 0, f"{name}.steps must be >= 0, got {ph.steps}")
        need(ph.eval_every > 0, f"{name}.eval_every must be > 0, got {ph.eval_every}")
    need(off.scan_steps > 0, f"offline.scan_steps must be > 0, got {off.scan_steps}")
    for k in ("steps", "eval_every", "ckpt_every"):
        need(off[k] % off.scan_steps == 0,
             f"offline.{k}={off[k]} must be a multiple of offline.scan_steps={off.scan_steps} "
             "(updates are fused in chunks of scan_steps)")
    need(on.utd >= 1, f"online.utd must be >= 1, got {on.utd}")
    need(on.get("scan_steps", 100) >= 1, f"online.scan_steps must be >= 1, got {on.get('scan_steps')}")
    need(on.ckpt_every >= 1, f"online.ckpt_every must be >= 1, got {on.ckpt_every}")
    need(on.learning_starts >= 0, f"online.learning_starts must be >= 0, got {on.learning_starts}")
    need(on.replay.capacity >= 1, f"online.replay.capacity must be >= 1, got {on.replay.capacity}")
    need(on.replay.init in replay.REPLAY_INITS,
         f"online.replay.init must be one of {replay.REPLAY_INITS}, got {on.replay.init!r}")
    need(0.0 <= on.replay.mixing_ratio < 1.0, f"online.replay.mixing_ratio must be in [0, 1), got {on.replay.mixing_ratio}")
    # unknown learner names and hyperparameters fail here, before any data is loaded
    for phase in ("offline", "online"):
        try:
            resolve_config(config[phase].learner, config[phase].agent)
        except ConfigError as e:
            raise ConfigError(f"{phase}.agent: {e}") from None


def check_batch_sizes(config, n_transitions: int) -> None:
    """A minibatch is at least one row and no larger than what it is drawn from."""
    for phase, size, what in (("offline", n_transitions, f"the dataset's {n_transitions} transitions"),
                              ("online", config.online.replay.capacity,
                               f"online.replay.capacity={config.online.replay.capacity}")):
        b = config[phase].agent.batch_size
        if not 1 <= b <= size:
            raise ConfigError(f"{phase}.agent.batch_size={b} must be between 1 and {what}")


def check_env_fits(dataset) -> None:
    """The dataset's environment builds and takes the data's observation and action layout."""
    obs_dim, act_dim = dataset.transitions.obs.shape[-1], dataset.transitions.action.shape[-1]
    try:
        env = dataset.make_env()
        obs, _ = env.reset(seed=0)
        env_act = env.action_space.shape
        env.close()
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001  (gymnasium / the wrappers on a spec that does not fit)
        raise DatasetError(f"{dataset.dataset_id}: its environment cannot be built to match the data "
                           f"({type(e).__name__}: {str(e)[:200]})") from None
    if np.shape(obs) != (obs_dim,) or tuple(env_act) != (act_dim,):
        raise DatasetError(f"{dataset.dataset_id}: the data has observations of {obs_dim} and actions of {act_dim} "
                           f"dimensions, its environment gives {np.shape(obs)} and {tuple(env_act)}")


#: What a run writes in its workdir; a workdir holding any of them holds a run.
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "eval.png", "checkpoints", "score_model")


def prepare_workdir(workdir: str, config, resume: bool, overwrite: bool) -> None:
    """Never touch another run by accident: an existing run needs ``resume`` (same config) or
    ``overwrite``; then write ``config.json``."""
    if resume and overwrite:
        raise ConfigError("pass either --resume (continue the run in the workdir) or --overwrite (replace it), not both")
    existing = [f for f in RUN_FILES if os.path.exists(os.path.join(workdir, f))]
    cfg_path = os.path.join(workdir, "config.json")
    if existing and not (resume or overwrite):
        raise WorkdirError(f"{workdir} already holds a run ({', '.join(existing)}); pass --resume to continue "
                           "it, --overwrite to replace it, or choose another --workdir")
    if resume and os.path.exists(cfg_path):
        with open(cfg_path) as f:
            if f.read() != _config_json(config):
                raise ConfigError(f"--resume: {cfg_path} holds a different config than the one given; "
                                  "resume with the same config, or use a new workdir")
    try:
        os.makedirs(workdir, exist_ok=True)
        if overwrite and existing:
            print(f"[smac_jax] --overwrite: removing the run in {workdir} ({', '.join(existing)})")
            for f in existing:
                path = os.path.join(workdir, f)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        with open(cfg_path, "w") as f:
            f.write(_config_json(config))
    except OSError as e:
        raise WorkdirError(f"cannot write to workdir {workdir}: {e.strerror or e}") from None


def _config_json(config) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def load_offline_dataset(dc):
    """The configured dataset, generated first if it is missing and ``dataset.generate`` allows."""
    from smac_jax.data.dataset import list_local_datasets, load_dataset

    if dc.id not in list_local_datasets() and dc.get("generate", False):
        from smac_jax.data.factory import generate_datasets

        env_id, kind = dc.generate_env, dc.generate_kind
        print(f"[smac_jax] dataset {dc.id!r} not found locally; generating it from {env_id} ...")
        generate_datasets(env_id, kinds=[kind], seed=dc.get("generate_seed", 0), **dict(dc.get("generate_kwargs", {})))
    return load_dataset(
        dc.id, normalize_obs=dc.normalize_obs, reward_scale=dc.reward_scale, reward_bias=dc.reward_bias,
        gamma=dc.get("gamma", 0.99),
    )


def run(config: ml_collections.ConfigDict, workdir: str, resume: bool = False, progress: bool = True,
        overwrite: bool = False) -> dict:
    """Run the whole offline-to-online job; returns the summary (also written to summary.json).

    A workdir that already holds a run is continued with ``resume=True`` (same config) or replaced
    with ``overwrite=True``; otherwise it is left untouched and :class:`WorkdirError` is raised."""
    validate_config(config)
    prepare_workdir(workdir, config, resume, overwrite)

    dataset = load_offline_dataset(config.dataset)
    data_np = dataset.transitions
    check_batch_sizes(config, int(data_np.reward.shape[0]))
    check_env_fits(dataset)
    obs_dim, act_dim = data_np.obs.shape[-1], data_np.action.shape[-1]
    data = jax.device_put(jax.tree.map(jnp.asarray, data_np))

    off_learner = make_learner(config.offline.learner, obs_dim, act_dim, config.offline.agent)
    on_learner = make_learner(config.online.learner, obs_dim, act_dim, config.online.agent)
    off_learner.prepare(dataset, workdir, progress)
    on_learner.prepare(dataset, workdir, progress)
    S = config.n_seeds
    seeds = [config.seed + i for i in range(S)]
    seed_keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(seed_keys)
    transfer_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys)
    offline_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(seed_keys)
    online_keys = jax.vmap(lambda k: jax.random.fold_in(k, 3))(seed_keys)

    def do_transfer(k, s):
        return on_learner.transfer(k, s, off_learner)

    # Fail before any training if the pair cannot be bridged.
    abstract_off = jax.eval_shape(off_learner.init, init_keys[0])
    try:
        jax.eval_shape(do_transfer, transfer_keys[0], abstract_off)
    except TransferError:
        raise
    except Exception as e:  # a learner without a custom transfer hitting an incompatible layout
        raise TransferError(f"{off_learner.name} -> {on_learner.name}: hand-over failed: {e}") from e

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.get("ckpt_keep", 2))
    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"))
    if not resume or (ckpt.latest_step("offline") is None and ckpt.latest_step("online") is None):
        log.truncate(lambda r: False)  # a fresh start (also: --resume with nothing to resume from)

    ref_min, ref_max = dataset.ref_min_score, dataset.ref_max_score
    if config.get("ref_min_score") is not None:
        ref_min, ref_max = config.ref_min_score, config.ref_max_score

    def score(returns):
        if ref_min is None or ref_max is None:
            return None
        return 100.0 * (np.asarray(returns) - ref_min) / (ref_max - ref_min)

    env_fn = lambda: dataset.make_env()
    evaluator = Evaluator(env_fn, S, config.eval.episodes, base_seed=config.seed)
    off_act = make_act_fn(off_learner)
    on_act = make_act_fn(on_learner)
    n_off, n_on = config.offline.steps, config.online.steps
    bar = tqdm(total=n_off + n_on, disable=not progress, unit="step", dynamic_ncols=True)
    last_eval = {"value": float("nan")}
    def evaluate(phase, step, act_fn, states, learner, extra_metrics):
        # Evaluation episodes are seeded by (phase, step), not by a counter of this process's
        # evaluations, so a resumed run evaluates exactly like an uninterrupted one.
        every = config.offline.eval_every if phase == "offline" else config.online.eval_every
        round_index = -(-int(step) // every) + (0 if phase == "offline" else 1_000_000)
        rets = evaluator(act_fn, states, round_index)
        check_finite(extra_metrics, phase, learner, step)
        mean = rets.mean(1)
        sc = score(mean)
        rows = []
        for i in range(S):
            row = {"phase": phase, "step": int(step), "seed": seeds[i], "eval_return": float(mean[i])}
            if sc is not None:
                row["eval_score"] = float(sc[i])
            for k, v in extra_metrics.items():
                row[k] = float(np.asarray(v)[i])
            rows.append(row)
        log.write(rows)
        last_eval["value"] = float(mean.mean())
        return mean

    # ---------------------------------------------------------------- offline phase
    on_resume_step = ckpt.latest_step("online") if resume else None
    off_step = 0
    off_states = None
    if on_resume_step is None:
        off_states = unalias(jax.vmap(off_learner.init)(init_keys))
        if resume and ckpt.latest_step("offline") is not None:
            off_states, meta = ckpt.restore("offline", off_states)
            off_states = unalias(off_states)
            off_step = int(meta["step"])
            log.truncate(lambda r: r["phase"] == "offline" and r["step"] <= off_step)
            print(f"[smac_jax] resumed offline phase at step {off_step}")
        offline_step = make_offline_step(off_learner, config.offline.scan_steps)
        bar.update(off_step)
        bar.set_postfix(phase="offline", eval=last_eval["value"])
        t0, done0 = time.time(), off_step
        metrics = {}
        while off_step < n_off:
            off_states, metrics = offline_step(off_states, data, offline_keys, off_step)
            off_step += config.offline.scan_steps
            bar.update(config.offline.scan_steps)
            check_finite(metrics, "offline", off_learner, off_step)
            if off_step % config.offline.eval_every == 0 or off_step == n_off:
                evaluate("offline", off_step, off_act, off_states, off_learner, metrics)
                ups = (off_step - done0) / max(time.time() - t0, 1e-9)
                bar.set_postfix(phase="offline", eval=f"{last_eval['value']:.1f}", upd_s=f"{ups:.0f}")
            if off_step % config.offline.ckpt_every == 0 and off_step < n_off:
                check_finite_state(off_states, "offline", off_learner, off_step)
                ckpt.save("offline", off_step, off_states, {"step": off_step})
        if n_off == 0 and ckpt.latest_step("offline") is None:
            evaluate("offline", 0, off_act, off_states, off_learner, {})
        if ckpt.latest_step("offline") != off_step:  # a resumed, finished offline phase is saved already
            check_finite_state(off_states, "offline", off_learner, off_step)
            ckpt.save("offline", off_step, off_states, {"step": off_step})

    # ---------------------------------------------------------------- transfer
    on_states = None
    replay_mode = config.online.replay.init
    mixing = config.online.replay.mixing_ratio if replay_mode == "mix" else None
    if on_resume_step is None:
        on_states = unalias(jax.jit(jax.vmap(do_transfer))(transfer_keys, off_states))
        if not config.get("transfer_reset_optimizer", True):
            on_states = _carry_optimizer_state(on_states, off_states)
    buf0 = replay.init_replay(replay_mode, data_np, obs_dim, act_dim, config.online.replay.capacity,
                              config.online.replay.get("top_n", 0))
    buffers = stack_seeds(buf0, S)
    del buf0
    on_step = 0
    collector = OnlineCollector(env_fn, seeds, 0, config.dataset.reward_scale, config.dataset.reward_bias)
    if on_resume_step is not None:
        template = {"states": jax.vmap(on_learner.init)(init_keys), "buffers": buffers}
        restored, meta = ckpt.restore("online", template)
        on_states, buffers = unalias(restored["states"]), unalias(restored["buffers"])
        on_step = int(meta["step"])
        collector.load_state_dict(meta["collector"])  # the environments exactly as they were
        log.truncate(lambda r: r["phase"] == "offline" or r["step"] <= on_step)
        bar.update(n_off + on_step)
        print(f"[smac_jax] resumed online phase at environment step {on_step}")

    # ---------------------------------------------------------------- online phase
    if on_step == 0:
        evaluate("online", 0, on_act, on_states, on_learner, {})
    act_step = make_act_step(on_learner)
    # Chunks of environment steps, each one dispatch (the environments are stepped from inside the
    # program); a chunk ends at every evaluation, checkpoint and at learning_starts.
    loops = {training: make_online_loop(on_learner, collector.step_packed, S, config.online.utd, mixing, training)
             for training in (False, True)}
    chunk = config.online.get("scan_steps", 100)
    learning_starts = config.online.learning_starts
    actions = act_step(on_states, collector.obs, online_keys, on_step)
    t0, done0 = time.time(), on_step
    metrics = {}
    while on_step < n_on:
        end = min(n_on, on_step + chunk, _next_multiple(on_step, config.online.eval_every),
                  _next_multiple(on_step, config.online.ckpt_every))
        training = on_step >= learning_starts  # environment step s trains iff s > learning_starts
        if not training:
            end = min(end, learning_starts)
        on_states, buffers, actions, m = loops[training](on_states, buffers, actions, data, online_keys, on_step,
                                                         end - on_step)
        bar.update(end - on_step)
        on_step = end
        if m:
            metrics = m
            check_finite(metrics, "online", on_learner, on_step)
        if on_step % config.online.eval_every == 0 or on_step == n_on:
            evaluate("online", on_step, on_act, on_states, on_learner, metrics)
            ups = (on_step - done0) / max(time.time() - t0, 1e-9)
            bar.set_postfix(phase="online", eval=f"{last_eval['value']:.1f}", env_s=f"{ups:.0f}")
        if on_step % config.online.ckpt_every == 0 or on_step == n_on:
            check_finite_state(on_states, "online", on_learner, on_step)
            ckpt.save("online", on_step, {"states": on_states, "buffers": buffers},
                      {"step": on_step, "collector": collector.state_dict()})
    bar.close()
    collector.close()
    evaluator.close()
    ckpt.close()

    summary = summarize(log, config, score_available=ref_min is not None)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    key = "eval_score" if ref_min is not None else "eval_return"
    plot_evaluations(log, os.path.join(workdir, "eval.png"),
                     f"{config.offline.learner} -> {config.online.learner} on {config.dataset.id}", key)
    return summary


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _carry_optimizer_state(on_states, off_states):
    opt = dict(on_states.opt_state)
    for g, s in off_states.opt_state.items():
        if g in opt and jax.tree.structure(s) == jax.tree.structure(opt[g]) and all(
            a.shape == b.shape for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(opt[g]))
        ):
            opt[g] = s
    return on_states.replace(opt_state=opt)


def summarize(log: MetricsLog, config, score_available: bool) -> dict:
    key = "eval_score" if score_available else "eval_return"
    off_steps, off = log.evaluations("offline", key)
    on_steps, on = log.evaluations("online", key)
    out: dict[str, Any] = {"metric": key, "offline_learner": config.offline.learner,
                           "online_learner": config.online.learner, "dataset": config.dataset.id}
    if off.size:
        out["offline_final"] = off[:, -1].tolist()
        out["offline_final_mean"] = float(np.mean(off[:, -1]))
    if on.size:
        out["online_final"] = on[:, -1].tolist()
        out["online_final_mean"] = float(np.mean(on[:, -1]))
        _, on_ret = log.evaluations("online", "eval_return")
        out["online_final_return_mean"] = float(np.mean(on_ret[:, -1]))
    if off.size and on.size and score_available:
        drops = [transfer_drop(off[i, -1], on_steps, on[i], config.online.steps) for i in range(on.shape[0])]
        out["transfer_drop"] = drops
        out["transfer_drop_mean"] = float(np.mean(drops))
    return out
