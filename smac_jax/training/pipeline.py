"""The offline-to-online pipeline: offline phase -> hand-over -> online phase (docs/algorithms.md,
"Offline-to-online protocol").

:func:`run` is the whole story on one screen; the phases live in
:mod:`smac_jax.training.phases`. Every state carries a leading seed axis: the learners' pure,
single-seed functions are ``jax.vmap``-ped over seeds, and each dispatch runs a chunk of fused
updates (offline) or of environment steps with their updates (online).
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil

import jax
import ml_collections

from smac_jax.data import replay
from smac_jax.data.dataset import list_local_datasets, load_dataset_from_config
from smac_jax.envs import REWARDS
from smac_jax.errors import ConfigError, DatasetError, DivergenceError, ProtocolError, WorkdirError  # noqa: F401  (re-exported)
from smac_jax.learners import Learner, available_learners, get_learner_class, make_learner, resolve_config
from smac_jax.learners.base import missing_config_field
from smac_jax.training.logger import check_sinks, plot_evaluations
from smac_jax.training.phases import (  # noqa: F401  (re-exported)
    RunContext,
    _check_hand_over,
    check_env_fits,
    check_finite,
    check_finite_state,
    offline_phase,
    online_phase,
    stack_seeds,
    start_online,
)
from smac_jax.training import vmap_sweep
from smac_jax.training.dataset_factory import KINDS
from smac_jax.training.steps import check_phases_agree, checked_metrics, runs_update_phase
from smac_jax.training.summary import summarize, write_json_atomic


def run(config: ml_collections.ConfigDict, workdir: str, resume: bool = False, progress: bool = True,
        overwrite: bool = False) -> dict:
    """Run the whole offline-to-online job; returns the summary (also written to summary.json).

    A workdir that already holds a run is continued with ``resume=True`` (same config) or replaced
    with ``overwrite=True``; otherwise it is left untouched and :class:`WorkdirError` is raised.
    The dataset must exist locally (``experiments/o2o.py`` generates a missing one first)."""
    validate_config(config)
    existing = _check_workdir(workdir, config, resume, overwrite)
    dc = config.dataset
    dataset = load_dataset_from_config(dc)
    check_batch_sizes(config, int(dataset.transitions.reward.shape[0]))
    check_replay_fits(config, dataset.transitions)
    check_env_fits(dataset)
    check_online_env(config, dataset)
    check_learners(config, dataset)
    note = get_learner_class(config.offline.learner).offline_note
    if note and config.offline.steps > 0:
        print(f"[smac_jax] warning: offline.learner={config.offline.learner!r}: {note}")
    on = config.online
    if 0 < on.steps <= on.learning_starts:
        print(f"[smac_jax] warning: online.learning_starts={on.learning_starts} >= online.steps={on.steps}: the online "
              "phase only collects data with the handed-over policy, no online update runs")
    if dataset.reward != "success" and config.get("ref_min_score") is None and (
            dataset.ref_min_score is None or dataset.ref_max_score is None):
        print(f"[smac_jax] warning: dataset {dc.id!r} has no reference returns: evaluations report returns, not "
              "normalised scores, and no transfer drop is computed (it is defined on normalised scores); set "
              "ref_min_score and ref_max_score (e.g. a random and an expert policy's returns) for both")
    fingerprint = _check_same_dataset(workdir, dataset, resume)
    # only now, with every check passed, is the run written: a start that failed leaves the workdir as it was
    lock = _write_workdir(workdir, config, existing, overwrite, fingerprint)
    try:
        return _run_locked(config, workdir, dataset, resume, progress)
    finally:
        os.close(lock)  # releases the workdir's lock (a killed process releases it too)


def _run_locked(config, workdir: str, dataset, resume: bool, progress: bool) -> dict:
    """:func:`run` once the workdir is written and locked."""
    dc = config.dataset
    ctx = RunContext.build(config, workdir, dataset, resume, progress)
    try:
        off_states = offline_phase(ctx)  # None when resuming inside the online phase
        states, buffers, collector, step = start_online(ctx, off_states)  # hand-over, or resume
        online_phase(ctx, states, buffers, collector, step)
    finally:
        ctx.close()
    if ctx.sweep is not None:  # settings x seeds in one program: a summary per setting, and one over them
        summary = vmap_sweep.write_outputs(workdir, config, ctx.sweep, ctx.log, ctx.has_scores, ctx.score_reference)
        print(f"[smac_jax] {ctx.sweep.n_settings} settings x {config.n_seeds} seeds:\n" + vmap_sweep.format_table(summary))
        for warning in dict.fromkeys(s["transfer_drop_warning"] for s in summary["settings"] if "transfer_drop_warning" in s):
            print(f"[smac_jax] warning: {warning}")
        write_json_atomic(os.path.join(workdir, "summary.json"), summary)
        return summary
    summary = summarize(ctx.log, config, score_available=ctx.has_scores, reference=ctx.score_reference)
    if "transfer_drop_warning" in summary:
        print(f"[smac_jax] warning: {summary['transfer_drop_warning']}")
    write_json_atomic(os.path.join(workdir, "summary.json"), summary)
    plot_evaluations(ctx.log, os.path.join(workdir, "eval.png"),
                     f"{config.offline.learner} -> {config.online.learner} on {dc.id}", summary["metric"],
                     summary["metric_label"])
    return summary


def check_online_env(config: ml_collections.ConfigDict, dataset) -> None:
    """``online.env="jax"`` / ``eval.env="jax"`` need a verified JAX-native port of the dataset's
    environment."""
    fields = _jax_env_fields(config)
    if not fields:
        return
    field = fields[0]  # both ask for the same port: built and checked once
    try:
        env = dataset.make_jax_env(eval_env=True)
    except ValueError as e:
        raise ConfigError(f"{field}='jax': {e}; use {field}='gymnasium'") from None
    t = dataset.transitions
    have, want = (env.obs_dim, env.act_dim), (t.obs.shape[-1], t.action.shape[-1])
    if have != want:
        raise ConfigError(f"{field}='jax': the JAX-native {env.env_id} has observations and actions of {have} "
                          f"dimensions, the data {want}; use {field}='gymnasium'")


def _jax_env_fields(config) -> list[str]:
    """The config fields that ask for the JAX-native environments."""
    return [f for f, v in (("online.env", config.online.env), ("eval.env", config.get("eval", {}).get("env")))
            if v == "jax"]


def check_learners(config: ml_collections.ConfigDict, dataset) -> None:
    """The learners' own checks before anything is written or fitted (``Learner.check_start``): a
    saved score model or C-VAE the run would load that was fitted with other settings, an offline
    learner the online one cannot take over from where that is known without preparing them."""
    obs_dim, act_dim = dataset.transitions.obs.shape[-1], dataset.transitions.action.shape[-1]
    off = make_learner(config.offline.learner, obs_dim, act_dim, config.offline.agent)
    on = make_learner(config.online.learner, obs_dim, act_dim, config.online.agent)
    off.check_start(dataset)
    on.check_start(dataset, source=off)
    for learner in (off, on):  # unfitted models of the prepared ones' shapes: nothing is fitted yet
        learner.stand_in_models()
    for learner in (off, on):  # a learner of one's own: its loss's mistakes before the workdir is written
        cls = type(learner)
        if not cls.__module__.startswith("smac_jax.") and _traceable_unprepared(learner):
            _check_update(learner, dataset)
    key = jax.random.PRNGKey(0)[None]
    try:  # the hand-over on shapes, as the run checks it again once the learners are prepared
        _check_hand_over(off, on, {"init": key, "transfer": key})
    except ConfigError:
        pass  # a learner of one's own that needs a prepared model and has no stand_in_models
    sweep = vmap_sweep.parse(config)
    if sweep is not None and all(_traceable_unprepared(learner) for learner in (off, on)):
        # every swept field changes the programs of its lanes (as the run checks again once prepared)
        vmap_sweep.wrap_learners(sweep, config, off, on, dataset.transitions)


def _traceable_unprepared(learner: Learner) -> bool:
    """Whether ``learner``'s programs can be traced before :meth:`Learner.prepare` ran: it prepares
    nothing, or it stands in for what it prepares (:meth:`Learner.stand_in_models`)."""
    cls = type(learner)
    return cls.prepare is Learner.prepare or cls.stand_in_models is not Learner.stand_in_models


#: Where the online phase's environments run: "gymnasium" (the host, stepped from inside the online
#: program by a host call) or "jax" (their JAX-native ports, stepped on the device: smac_jax.jax_envs).
ONLINE_ENVS = ("gymnasium", "jax")


def _check_update(learner: Learner, dataset) -> None:
    """Trace one ``update`` of ``learner`` on a minibatch of ``dataset``'s shapes (``jax.eval_shape``:
    nothing is computed), so that a config field its loss reads but its ``default_config()`` lacks,
    or a loss that is not a scalar, stops the run before it writes its workdir. Run for learners
    defined outside the library (the library's own are tested) that need no prepared model."""
    store = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jax.dtypes.canonicalize_dtype(x.dtype)),
                         dataset.transitions)
    bs = learner.config.batch_size

    def one_update(state, data, key, phase=None):
        batch = replay.sample_transitions(data, key, bs)
        new, metrics = learner.update(state, batch, key) if phase is None else learner.update_phase(state, batch, key, phase)
        return new, checked_metrics(learner, metrics)

    try:
        state = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
        out = jax.eval_shape(one_update, state, store, jax.random.PRNGKey(0))
        if learner.update_period > 1 and runs_update_phase(learner):  # as the offline loop runs it
            st, metrics = state, {}
            for phase in range(learner.update_period):  # the phases in a row, their metrics together
                st, m = jax.eval_shape(functools.partial(one_update, phase=phase), st, store, jax.random.PRNGKey(0))
                metrics.update(m)
            check_phases_agree(learner, (st, metrics), out)
    except (AttributeError, KeyError) as e:  # ml_collections: a field the config lacks, read as .field or ["field"]
        field = missing_config_field(e, learner.config)
        if field is None:
            raise
        raise ConfigError(f"learner {learner.name!r}: its update reads config.{field}{_user_line(e)}, which "
                          f"{type(learner).__name__}.default_config() does not define") from None
    except jax.errors.ConcretizationTypeError as e:
        raise ProtocolError(f"learner {learner.name!r}: Python control flow on a traced value{_user_line(e)}: its "
                            "update is traced (one program for every step), so use jnp.where or jax.lax.cond "
                            "instead of if / while / bool() / int() on arrays") from None


def _user_line(e: BaseException) -> str:
    """`` at FILE:LINE (`code`)``: the innermost frame of ``e``'s traceback outside JAX, Flax, optax,
    NumPy and this library (the user's code), or ``""``."""
    import linecache
    import traceback

    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.startswith(lib) and "site-packages" not in f.filename
              and "dist-packages" not in f.filename and not f.filename.startswith("<")]
    if not frames:
        return ""
    f = frames[-1]
    code = (f.line or linecache.getline(f.filename, f.lineno)).strip()
    return f" at {os.path.basename(f.filename)}:{f.lineno} (`{code}`)"


def validate_config(config: ml_collections.ConfigDict) -> None:
    def need(cond, msg):
        if not cond:
            raise ConfigError(msg)

    need(config.n_seeds >= 1, f"n_seeds must be >= 1, got {config.n_seeds}")
    need(config.seed >= 0, f"seed must be >= 0 (environments take non-negative seeds), got {config.seed}")
    lo, hi = config.get("ref_min_score"), config.get("ref_max_score")
    need((lo is None) == (hi is None), f"ref_min_score ({lo}) and ref_max_score ({hi}): give both or neither")
    need(all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in (lo, hi)),
         f"ref_min_score ({lo}) and ref_max_score ({hi}) must be finite numbers")
    need(lo is None or hi is None or hi > lo,
         f"ref_max_score ({hi}) must be above ref_min_score ({lo}): scores are 100 * (return - min) / (max - min)")
    need(config.dataset.get("generate_seed", 0) >= 0,
         f"dataset.generate_seed must be >= 0, got {config.dataset.get('generate_seed')}")
    need(0.0 < config.dataset.gamma <= 1.0, f"dataset.gamma must be in (0, 1], got {config.dataset.gamma}")
    if config.dataset.get("generate", False):  # what the library's dataset factory can write
        need(config.dataset.generate_kind in KINDS,
             f"dataset.generate_kind must be one of {KINDS}, got {config.dataset.generate_kind!r}")
    for k in ("reward_scale", "reward_bias"):
        v = config.dataset.get(k, 0.0)
        need(isinstance(v, (int, float)) and math.isfinite(v), f"dataset.{k} must be a finite number, got {v!r}")
    tol = config.dataset.get("action_tolerance", 1e-3)
    need(isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0,
         f"dataset.action_tolerance must be a finite number >= 0, got {tol!r}")
    need(config.eval.episodes >= 1, f"eval.episodes must be >= 1, got {config.eval.episodes}")
    need(config.eval.get("env", "gymnasium") in ONLINE_ENVS,
         f"eval.env must be one of {ONLINE_ENVS}, got {config.eval.get('env')!r}")
    need(config.ckpt_keep >= 1, f"ckpt_keep must be >= 1, got {config.ckpt_keep}")
    check_sinks(config)  # a missing optional package fails here, before any data is loaded
    need(config.dataset.get("reward", "env") in REWARDS,
         f"dataset.reward must be one of {REWARDS}, got {config.dataset.get('reward')!r}")
    off, on = config.offline, config.online
    for name, ph in (("offline", off), ("online", on)):
        need(ph.steps >= 0, f"{name}.steps must be >= 0, got {ph.steps}")
        need(ph.eval_every > 0, f"{name}.eval_every must be > 0, got {ph.eval_every}")
        need(ph.ckpt_every > 0, f"{name}.ckpt_every must be > 0, got {ph.ckpt_every}")
    need(off.scan_steps > 0, f"offline.scan_steps must be > 0, got {off.scan_steps}")
    for k in ("steps", "eval_every", "ckpt_every"):
        need(off[k] % off.scan_steps == 0,
             f"offline.{k}={off[k]} must be a multiple of offline.scan_steps={off.scan_steps} "
             "(updates are fused in chunks of scan_steps)")
    need(on.env in ONLINE_ENVS, f"online.env must be one of {ONLINE_ENVS}, got {on.env!r}")
    need(1 <= on.utd < 2**31, f"online.utd must be an integer in [1, 2**31), got {on.utd}")
    need(on.scan_steps >= 1, f"online.scan_steps must be >= 1, got {on.scan_steps}")
    need(on.learning_starts >= 0, f"online.learning_starts must be >= 0, got {on.learning_starts}")
    need(on.critic_warmup >= 0, f"online.critic_warmup must be >= 0, got {on.critic_warmup}")
    need(on.replay.capacity >= 1, f"online.replay.capacity must be >= 1, got {on.replay.capacity}")
    need(on.replay.init in replay.REPLAY_INITS,
         f"online.replay.init must be one of {replay.REPLAY_INITS}, got {on.replay.init!r}")
    need(0.0 <= on.replay.mixing_ratio < 1.0, f"online.replay.mixing_ratio must be in [0, 1), got {on.replay.mixing_ratio}")
    # top_n = 0 is an empty buffer: what docs/aca.md prescribes for ACA's random and medium presets
    need(on.replay.init != "top_n" or on.replay.top_n >= 0,
         f"online.replay.top_n must be >= 0 with online.replay.init='top_n', got {on.replay.top_n}")
    # unknown learner names and hyperparameters fail here, before any data is loaded
    for phase in ("offline", "online"):
        need(config[phase].learner in available_learners(),
             f"{phase}.learner: unknown learner {config[phase].learner!r}; available: {', '.join(available_learners())}")
        try:
            agent = resolve_config(config[phase].learner, config[phase].agent)
        except ConfigError as e:
            # e.g. --config.online.learner=iql on a config built for SAC: the agent section is SAC's
            hint = (f" ({phase}.agent holds another learner's hyperparameters: to change a learner, name it in "
                    "--config=configs/o2o.py:TASK,OFFLINE,ONLINE, which brings its own)"
                    if "is not a hyperparameter of learner" in str(e) else "")
            raise ConfigError(f"{phase}.agent: {e}{hint}") from None
        cls = get_learner_class(config[phase].learner)
        try:  # the learner's own cross-field rules (its __init__), before any data is read
            cls(agent, 1, 1)
        except ConfigError as e:
            raise ConfigError(f"{phase}.agent: {e}") from None
        if phase == "online" and on.replay.init == "mix":  # round(ratio x batch) dataset rows per minibatch
            n_off = int(round(on.replay.mixing_ratio * agent.batch_size))
            need(n_off < agent.batch_size,
                 f"online.replay.mixing_ratio={on.replay.mixing_ratio} takes round({on.replay.mixing_ratio} x "
                 f"{agent.batch_size}) = {n_off} of the {agent.batch_size} rows of a minibatch from the dataset, none "
                 "from the online buffer; lower it")
        # the data's Monte-Carlo returns are discounted with dataset.gamma: what the offline learner's
        # Q-against-return diagnostics and a Cal-QL bound (in either phase) compare Q values with
        gamma = agent.get("gamma")
        if gamma is not None and gamma != config.dataset.gamma and (phase == "offline" or cls.reads_mc_return):
            use = "its lower bound" if cls.reads_mc_return else "the Q-against-return diagnostics"
            raise ConfigError(f"{phase}.agent.gamma={gamma} but dataset.gamma={config.dataset.gamma}: the data's "
                              f"Monte-Carlo returns ({use}) would be discounted otherwise than the learner's "
                              f"targets; set --config.dataset.gamma={gamma} too")
    vmap_sweep.parse(config)  # a malformed or unsweepable vmap_sweep fails here too
    _check_online_env_before_data(config)


def _check_online_env_before_data(config) -> None:
    """``online.env="jax"`` or ``eval.env="jax"``: a backend of the JAX-native environments installed
    and, for a dataset the launcher would generate, a port of the environment it generates from,
    before a dataset is generated (check_online_env checks the loaded dataset's own environment)."""
    fields = _jax_env_fields(config)
    if not fields:
        return
    from smac_jax import jax_envs

    dc = config.dataset
    try:
        generated = dc.get("generate", False) and dc.get("generate_env") and dc.id not in list_local_datasets()
        jax_envs.check_port(dc.generate_env if generated else None)  # None: some backend installed
    except ValueError as e:
        raise ConfigError(f"{fields[0]}='jax': {e}; use {fields[0]}='gymnasium'") from None


def check_batch_sizes(config, n_transitions: int) -> None:
    """A minibatch is at least one row and no larger than what it is drawn from."""
    r = config.online.replay
    online_rows = r.capacity + (n_transitions if r.init == "full" else 0)  # "full" copies the dataset in too
    for phase, size, what in (("offline", n_transitions, f"the dataset's {n_transitions} transitions"),
                              ("online", online_rows, f"online.replay.capacity={r.capacity}" + (
                                  f" plus the dataset's {n_transitions} rows" if r.init == "full" else ""))):
        b = config[phase].agent.batch_size
        if not 1 <= b <= size:
            raise ConfigError(f"{phase}.agent.batch_size={b} must be between 1 and {what}")


def _memory_bytes() -> int | None:
    """The memory the online replay buffers must fit in: the host's physical memory, and the
    default device's limit where it reports one (None if neither is known)."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        pass
    try:
        limits.append((jax.devices()[0].memory_stats() or {}).get("bytes_limit"))
    except Exception:  # noqa: BLE001  (a backend without memory statistics)
        pass
    limits = [int(v) for v in limits if v]
    return min(limits) if limits else None


def check_replay_fits(config, transitions, memory_bytes: int | None = None) -> None:
    """The online replay buffers (one per lane, each ``replay.capacity`` rows plus the dataset rows
    that ``full`` / ``top_n`` copy in) fit in ``memory_bytes`` (default: :func:`_memory_bytes`).
    Checked before the offline phase: the buffers are built at the hand-over, so a capacity that
    cannot be allocated would otherwise stop the run only after its offline training."""
    r = config.online.replay
    obs_dim, act_dim = transitions.obs.shape[-1], transitions.action.shape[-1]
    rows = int(r.capacity)
    if r.init == "full":
        rows += int(transitions.reward.shape[0])
    elif r.init == "top_n":
        rows += int(replay.top_n_transitions(transitions, r.top_n).reward.shape[0])
    sweep = vmap_sweep.parse(config)
    lanes = config.n_seeds if sweep is None else len(sweep.lane_seed_index)
    need = lanes * rows * replay.row_width(obs_dim, act_dim) * 4  # float32 rows
    avail = _memory_bytes() if memory_bytes is None else memory_bytes
    if avail is not None and need > avail:
        raise ConfigError(f"online.replay.capacity={r.capacity}: the online replay buffers ({lanes} x {rows:,} rows of "
                          f"{replay.row_width(obs_dim, act_dim)} float32) need {need / 2**30:.1f} GiB, more than the "
                          f"{avail / 2**30:.1f} GiB of memory here; lower online.replay.capacity")


#: Which data a run trains on (:func:`_check_same_dataset`).
DATASET_FILE = "dataset.json"
#: What a run writes in its workdir; a workdir holding any of them holds a run.
RUN_FILES = ("config.json", DATASET_FILE, "metrics.jsonl", "summary.json", "eval.png", "checkpoints", "score_model", "cvae",
             "tensorboard", "wandb", *vmap_sweep.RUN_FILES)


def check_start(config, workdir: str, resume: bool = False, overwrite: bool = False) -> None:
    """What :func:`run` checks before it reads any data, for a launcher to call before it spends time
    on a missing dataset: the config (:func:`validate_config`) and the workdir (an existing run needs
    ``resume`` with the same config, or ``overwrite``). Nothing is written."""
    validate_config(config)
    _check_workdir(workdir, config, resume, overwrite)


def _check_workdir(workdir: str, config, resume: bool, overwrite: bool) -> list[str]:
    """The run files already in ``workdir``, after checking that this start may touch them: never
    another run by accident (an existing run needs ``resume`` with the same config, or ``overwrite``)."""
    if resume and overwrite:
        raise ConfigError("pass either --resume (continue the run in the workdir) or --overwrite (replace it), not both")
    existing = [f for f in RUN_FILES if os.path.exists(os.path.join(workdir, f))]
    cfg_path = os.path.join(workdir, "config.json")
    if existing and not (resume or overwrite):
        raise WorkdirError(f"{workdir} already holds a run ({', '.join(existing)}); pass --resume (resume=True "
                           "from Python) to continue it, --overwrite (overwrite=True) to replace it, or choose another "
                           "--workdir")
    if resume and os.path.exists(cfg_path):
        with open(cfg_path) as f:
            stored = f.read()
        if stored != _config_json(config):
            raise ConfigError(f"--resume: {cfg_path} holds a different config than the one given "
                              f"({_config_changes(stored, config)}); resume with the run's config, or use a new workdir")
    return existing


def _config_changes(stored: str, config, limit: int = 4) -> str:
    """The fields where ``config`` differs from the stored ``config.json`` text, as "field: old -> new"."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    try:
        old, new = flat(json.loads(stored)), flat(json.loads(_config_json(config)))
    except (json.JSONDecodeError, AttributeError):
        return "its config.json is not a config this library wrote"
    missing = object()
    changes = [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}" for k in sorted(set(old) | set(new))
               if old.get(k, missing) != new.get(k, missing)]
    more = f"; and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


def _lock_workdir(workdir: str) -> int:
    """An open descriptor of ``workdir`` holding an exclusive lock on it (released when closed or when
    the process ends): a second process running the same workdir (a requeued job while the first
    still runs) stops with one line instead of writing the same checkpoints and metrics rows."""
    fd = os.open(workdir, os.O_RDONLY)
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: unlocked
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkdirError(f"workdir {workdir} is in use by another process running it; wait for that run to end "
                           "(or stop it) before resuming") from None
    return fd


def _dataset_record(dataset) -> dict:
    return {"id": dataset.dataset_id, "transitions": int(dataset.transitions.reward.shape[0]),
            "episodes": int(dataset.n_episodes), "fingerprint": dataset.fingerprint()}


def _check_same_dataset(workdir: str, dataset, resume: bool) -> dict:
    """The record of ``dataset`` a run keeps in ``workdir/dataset.json``, after checking, on a resume,
    that the run started on the same data: a dataset regenerated or edited since (same id, other
    transitions) would silently continue the run on other data, so it stops with one line."""
    record = _dataset_record(dataset)
    path = os.path.join(workdir, DATASET_FILE)
    if not (resume and os.path.exists(path)):
        return record
    try:
        with open(path) as f:
            stored = json.load(f)
        old = stored["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return record  # unreadable (a run killed while writing it): written again
    if old != record["fingerprint"]:
        raise DatasetError(
            f"--resume: dataset {record['id']!r} is not the data this run started on ({stored.get('transitions', '?'):,} "
            f"transitions in {stored.get('episodes', '?'):,} episodes then, {record['transitions']:,} in "
            f"{record['episodes']:,} now, different contents); continuing would train on other data: restore the "
            f"dataset the run started on, or start a new workdir")
    return record


def _write_workdir(workdir: str, config, existing: list[str], overwrite: bool, dataset_record: dict | None = None) -> int:
    """Lock the workdir and write ``config.json`` and the dataset's record (after :func:`_check_workdir`
    and :func:`_check_same_dataset`), removing the ``existing`` run first with ``overwrite``; returns
    the lock's descriptor."""
    cfg_path = os.path.join(workdir, "config.json")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot write to workdir {workdir}: {e.strerror or e}") from None
    lock = _lock_workdir(workdir)
    try:
        if overwrite and existing:
            print(f"[smac_jax] --overwrite: removing the run in {workdir} ({', '.join(existing)})")
            for f in existing:
                path = os.path.join(workdir, f)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        with open(cfg_path, "w") as f:
            f.write(_config_json(config))
        if dataset_record is not None:
            write_json_atomic(os.path.join(workdir, DATASET_FILE), dataset_record)
    except OSError as e:
        os.close(lock)
        raise WorkdirError(f"cannot write to workdir {workdir}: {e.strerror or e}") from None
    return lock


def _config_json(config) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def same_config(workdir: str, config) -> bool:
    """Whether ``workdir/config.json`` holds ``config`` (as :func:`run` wrote it)."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            return f.read() == _config_json(config)
    except OSError:
        return False
