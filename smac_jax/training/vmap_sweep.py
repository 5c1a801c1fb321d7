"""Settings x seeds in one program: a run's ``vmap_sweep`` (docs/sweeps.md, "Settings in one program").

``config.vmap_sweep = "offline.agent.kappa=0.3,1,3; online.agent.critic_lr=1e-4,3e-4"`` runs every
combination of the listed values (the grid, first field slowest: here 6 settings) times
``n_seeds`` seeds as lanes of the run's vmapped programs: one offline program, one hand-over, one
online loop for all of them (a sweep of online values only shares one offline phase of ``n_seeds``
lanes, repeated for every setting at the hand-over). Lane ``k * n_seeds + j`` is setting ``k`` with
seed ``seed + j``: every
setting gets the same seeds, hence the same initial networks (where the swept value does not
change the initialisation), minibatches, exploration noise and environment episodes, so two
settings differ only by their values.

What can be swept: float hyperparameters of the offline or online learner (``offline.agent.*``,
``online.agent.*``) that its update, action and hand-over programs consume as numbers: learning
rates, loss weights, targets, temperatures. Integer fields (sizes, counts, periods), switches and
names shape the program and are swept with separate runs (``experiments/sweep.py --set``);
:func:`smac_jax.learners.swept.check_sweepable` names a float field that turns out to be one.

Outputs, besides the run's checkpoints: ``settings/<k>/`` holds setting ``k``'s ``config.json`` (the
run's config with that setting's values and no ``vmap_sweep``), ``metrics.jsonl``, ``summary.json`` and
``eval.png`` exactly as a plain run with that config writes them; the workdir's ``summary.json`` lists
every setting's values and results, its ``eval.png`` draws every setting's curve and
``sensitivity.png`` (data: ``settings.csv``) the results against the values. The analyses read
``settings/<k>`` as a run of its own (:func:`setting_of`, :func:`setting_lanes`).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smac_jax.data import replay
from smac_jax.errors import ConfigError
from smac_jax.learners import make_learner, resolve_config
from smac_jax.learners.swept import HPARAMS, Swept, check_float_field, check_sweepable, with_hparams
from smac_jax.training.logger import (SENSITIVITY_PANELS, MetricsLog, format_value, make_sinks, plot_evaluations,
                                      plot_sensitivity, plot_settings)
from smac_jax.training.summary import summarize, write_json_atomic

PHASES = ("offline", "online")
#: Float fields that are read outside the lane programs, with why.
NOT_SWEEPABLE = {"gamma": "evaluation reads it to put the returns obtained in the critic's units"}
SETTINGS_DIR = "settings"
#: What a swept run writes in its workdir besides a plain run's files.
RUN_FILES = (SETTINGS_DIR, "sensitivity.png", "settings.csv")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed ``vmap_sweep``: the swept config paths and every setting's values (the grid)."""

    paths: tuple[str, ...]
    settings: tuple[dict[str, float], ...]
    n_seeds: int

    @property
    def n_settings(self) -> int:
        return len(self.settings)

    @functools.cached_property
    def lane_setting(self) -> list[int]:
        """The setting of each lane (lanes are setting-major)."""
        return [k for k in range(self.n_settings) for _ in range(self.n_seeds)]

    @functools.cached_property
    def lane_seed_index(self) -> list[int]:
        """Each lane's seed index ``j`` (seed ``config.seed + j``)."""
        return [j for _ in range(self.n_settings) for j in range(self.n_seeds)]

    @property
    def sweeps_offline(self) -> bool:
        """Whether any offline value is swept; if not, the settings share one offline phase."""
        return any(p.startswith("offline.") for p in self.paths)

    def lane_values(self) -> dict[str, np.ndarray]:
        return {p: np.asarray([self.settings[k][p] for k in self.lane_setting], np.float32) for p in self.paths}

    def label(self, k: int) -> str:
        return values_label(self.settings[k])

    def setting_config(self, config: ml_collections.ConfigDict, k: int) -> ml_collections.ConfigDict:
        """The run's config with setting ``k``'s values and no ``vmap_sweep``: what a plain run of
        that setting alone would be given."""
        cfg = config.copy_and_resolve_references()
        cfg.vmap_sweep = ""
        for p, v in self.settings[k].items():
            phase, _, field = p.split(".")
            cfg[phase].agent[field] = v
        return cfg

    def wrap(self, learner, phase: str) -> Swept:
        fields = {p: p.split(".")[-1] for p in self.paths if p.startswith(phase + ".")}
        names = [f"setting {k} ({self.label(k)}), seed index {j}" for k, j in zip(self.lane_setting, self.lane_seed_index)]
        return Swept(learner, self.lane_values(), fields, names, self.lane_seed_index)


def parse_spec(spec: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """The ``(path, values)`` pairs of a ``vmap_sweep`` string, checked for syntax only (paths of the
    form ``offline.agent.FIELD`` / ``online.agent.FIELD``, numbers, nothing listed twice); a
    malformed entry is a :class:`ConfigError` naming it."""
    out: list[tuple[str, tuple[float, ...]]] = []
    for part in (p.strip() for p in str(spec or "").split(";")):
        if not part:
            continue
        path, eq, vals = part.partition("=")
        path = path.strip()
        if not eq or not vals.strip():
            raise ConfigError(f"vmap_sweep: {part!r} is not 'PATH=V1,V2,...' (e.g. 'offline.agent.kappa=0.3,1,3')")
        phase, _, field = path.partition(".agent.")
        if phase not in PHASES or not field or "." in field:
            raise ConfigError(f"vmap_sweep: {path!r} is not a learner hyperparameter (offline.agent.FIELD or "
                              "online.agent.FIELD); other fields shape the run: sweep them as separate runs "
                              "(experiments/sweep.py --set)")
        if path in dict(out):
            raise ConfigError(f"vmap_sweep: {path} is listed twice")
        try:
            nums = tuple(float(v) for v in vals.split(","))
        except ValueError:
            raise ConfigError(f"vmap_sweep: {path}: values must be numbers, got {vals.strip()!r}") from None
        if not all(math.isfinite(v) for v in nums):
            raise ConfigError(f"vmap_sweep: {path}: values must be finite numbers, got {vals.strip()!r} (a setting "
                              "of inf runs as a separate run: experiments/sweep.py --set)")
        lanes = [float(np.float32(v)) for v in nums]  # what the lanes hold
        if len(set(lanes)) != len(lanes):
            raise ConfigError(f"vmap_sweep: {path} lists a value twice ({vals.strip()}: the same in float32, "
                              "the precision the lanes hold)")
        out.append((path, nums))
    if not out and str(spec or "").strip():
        raise ConfigError(f"vmap_sweep: {spec!r} names no setting; give 'PATH=V1,V2,...' (e.g. "
                          "'offline.agent.kappa=0.3,1,3'), or leave it empty for a run without settings")
    return tuple(out)


#: Environments stepped on the host per evaluation round above which a swept run says so at its start.
WIDE_EVALUATION = 512


def wide_sweep_note(sweep: Sweep, episodes: int) -> str | None:
    """One line for a sweep whose evaluations step many environments on the host (they run in
    Python, one per lane and episode, whatever the accelerator), or None."""
    lanes = sweep.n_settings * sweep.n_seeds
    if lanes * episodes <= WIDE_EVALUATION:
        return None
    return (f"[smac_jax] vmap_sweep: {sweep.n_settings} settings x {sweep.n_seeds} seeds = {lanes} lanes; every "
            f"evaluation steps {lanes * episodes:,} environments ({episodes} episodes per lane) on the host, "
            "which can take longer than the updates (fewer settings per run, or eval.episodes, shorten it; "
            "eval.env='jax' runs them on the device where the environment has a JAX-native port)")


def parse(config: ml_collections.ConfigDict) -> Sweep | None:
    """The config's sweep, or None; a malformed or unsweepable entry is a :class:`ConfigError`
    naming it."""
    grid = parse_spec(config.get("vmap_sweep", ""))
    if not grid:
        return None
    for path, _ in grid:
        phase, _, field = path.partition(".agent.")
        defaults = resolve_config(config[phase].learner, config[phase].agent)
        if field not in defaults:
            raise ConfigError(f"vmap_sweep: {field!r} is not a hyperparameter of {phase} learner "
                              f"{config[phase].learner!r} (known: {', '.join(sorted(defaults))})")
        current = defaults[field]
        if field in NOT_SWEEPABLE:
            raise ConfigError(f"vmap_sweep: {path} cannot be swept in one program: {NOT_SWEEPABLE[field]}")
        check_float_field(path, current)
    sweep = Sweep(tuple(p for p, _ in grid), grid_settings(grid), int(config.n_seeds))
    for k in range(sweep.n_settings):  # each setting's values pass the learner's range checks
        for phase in PHASES:
            own = {p.split(".")[-1]: v for p, v in sweep.settings[k].items() if p.startswith(phase + ".")}
            if own:
                try:
                    resolve_config(config[phase].learner, {**config[phase].agent, **own})
                except ConfigError as e:
                    raise ConfigError(f"vmap_sweep setting {k} ({sweep.label(k)}): {phase}.agent: {e}") from None
    return sweep


def grid_settings(grid: tuple[tuple[str, tuple[float, ...]], ...]) -> tuple[dict[str, float], ...]:
    """Every setting of a sweep (:func:`parse_spec`'s pairs): each combination of the values, the
    first field varying slowest."""
    paths = [p for p, _ in grid]
    return tuple(dict(zip(paths, combo)) for combo in itertools.product(*(v for _, v in grid)))


def is_swept(workdir: str) -> bool:
    """Whether ``workdir`` holds a ``vmap_sweep`` run (its ``config.json`` has one)."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            return bool(parse_spec(json.load(f).get("vmap_sweep")))
    except (OSError, json.JSONDecodeError, ConfigError):
        return False


def setting_of(workdir: str) -> tuple[str, int, dict] | None:
    """For ``<sweep>/settings/<k>``, a setting's directory of a ``vmap_sweep`` run: the sweep's
    workdir, ``k`` and the sweep's ``config.json`` data; None for any other directory."""
    parent, k = os.path.split(os.path.normpath(os.path.abspath(workdir)))
    root, settings = os.path.split(parent)
    path = os.path.join(root, "config.json")
    if settings != SETTINGS_DIR or not k.isdigit() or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return (root, int(k), config) if config.get("vmap_sweep") else None


def setting_dirs(workdir: str) -> list[str]:
    """A swept run's setting directories, ``settings/0`` onwards (those written so far)."""
    root = os.path.join(workdir, SETTINGS_DIR)
    ks = sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else []
    return [setting_dir(workdir, k) for k in ks]


def learner_names(config: dict, k: int) -> dict[str, str]:
    """Setting ``k``'s offline and online learners named with their swept values, e.g.
    ``{"offline": "cql", "online": "sac [actor_lr=0.0001]"}``, from the sweep's ``config.json``
    data: how reports and figures name a setting."""
    values = grid_settings(parse_spec(config["vmap_sweep"]))[k]
    names = {}
    for phase in PHASES:
        own = values_label({p: v for p, v in values.items() if p.startswith(phase + ".")})
        names[phase] = config[phase]["learner"] + (f" [{own}]" if own else "")
    return names


def pair_label(config: dict, k: int) -> str:
    """Setting ``k`` as ``offline -> online`` with its values (:func:`learner_names`)."""
    names = learner_names(config, k)
    return f"{names['offline']} -> {names['online']}"


def values_label(values: dict[str, float]) -> str:
    """``field=value, ...`` of a setting's values (path -> value)."""
    return ", ".join(f"{p.split('.')[-1]}={format_value(v)}" for p, v in values.items())


def setting_lanes(config: dict, k: int) -> dict[str, slice]:
    """Which lanes of a swept run's checkpoints hold setting ``k``'s seeds, per phase (``config``:
    the run's ``config.json`` data). Online lanes are setting-major; the offline checkpoints of a
    sweep of online values only hold the shared offline phase's ``n_seeds`` lanes."""
    grid = parse_spec(config.get("vmap_sweep", ""))
    if not grid:
        raise ConfigError("the run has no vmap_sweep")
    n, n_settings = int(config["n_seeds"]), len(grid_settings(grid))
    if not 0 <= k < n_settings:
        raise ConfigError(f"the sweep has settings 0 to {n_settings - 1}, not {k}")
    online = slice(k * n, (k + 1) * n)
    return {"offline": online if sweeps_offline(grid) else slice(0, n), "online": online}


def sweeps_offline(grid: tuple[tuple[str, tuple[float, ...]], ...]) -> bool:
    """Whether a sweep (:func:`parse_spec`'s pairs) varies offline values; if not, its settings
    share one offline phase of ``n_seeds`` lanes, saved as a plain run's."""
    return any(p.startswith("offline.") for p, _ in grid)


def wrap_learners(sweep: Sweep, config, off, on, transitions) -> tuple[Swept, Swept]:
    """The run's two learners wrapped for the sweep's lanes, after every setting's learner was built
    (its own checks, with concrete values) and every swept field was checked to vary per lane."""
    obs_dim, act_dim = off.obs_dim, off.act_dim
    for k in range(sweep.n_settings):
        cfg = sweep.setting_config(config, k)
        for phase in PHASES:
            try:
                make_learner(cfg[phase].learner, obs_dim, act_dim, cfg[phase].agent)
            except ConfigError as e:
                raise ConfigError(f"vmap_sweep setting {k} ({sweep.label(k)}): {phase}.agent: {e}") from None
    # without offline values the settings share one offline phase of n_seeds lanes (handover_source)
    s_off = sweep.wrap(off, "offline") if sweep.sweeps_offline else off
    s_on = sweep.wrap(on, "online")
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    obs = jax.ShapeDtypeStruct((4, obs_dim), jnp.float32)
    for learner, phase in ((s_off, "offline"), (s_on, "online")):
        if not isinstance(learner, Swept) or not learner.fields:
            continue
        bs = int(learner.inner.config.batch_size)
        batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((bs, *x.shape[1:]), x.dtype), transitions)
        state = jax.eval_shape(learner.inner.init, key)
        # the programs that build a lane's state: the offline learner's initialisation, the online one's hand-over
        if phase == "offline":
            programs = {"initialisation": (lambda b, k: b.init(k), (key,))}
        else:
            src = jax.eval_shape(off.init, key)
            programs = {"hand-over": (lambda b, k, s: b.transfer(k, s, off), (key, src))}
        programs["update"] = (lambda b, st, bt, k: b.update(st, bt, k), (state, batch, key))
        programs["action"] = (lambda b, st, o, k: b.act(st, o, k, False), (state, obs, key))
        if learner.host_update_every:  # e.g. SAMG's adaptive update, on the period's buffer rows
            cap = int(config.online.replay.capacity)
            n_rows = min(learner.host_update_every, cap)
            scalar = jax.ShapeDtypeStruct((), jnp.int32)
            buffer = replay.ReplayBuffer(jax.ShapeDtypeStruct((cap, replay.row_width(obs_dim, act_dim)), jnp.float32),
                                         scalar, scalar, obs_dim, act_dim)
            programs["host update"] = (lambda b, st, bf, k: b.host_update(st, bf, k, n_rows), (state, buffer, key))
        check_sweepable(learner, programs, phase)
    return s_off, s_on


def handover_source(sweep: Sweep, off_states, on: Swept, lanes: bool = True):
    """The offline states the hand-over starts from: with a lane per setting and seed, each
    carrying its values. States of a shared offline phase (one lane per seed) are repeated for
    every setting; states that already have every lane pass unchanged. ``lanes=False``: one state
    without a lane axis (the first lane's values), for checking the hand-over's shapes."""
    if not lanes:
        return off_states if HPARAMS in off_states.extra else with_hparams(off_states, on.lane(0))
    if HPARAMS in off_states.extra:
        return off_states
    tiled = jax.tree.map(lambda x: jnp.tile(x, (sweep.n_settings,) + (1,) * (x.ndim - 1)), off_states)
    return with_hparams(tiled, {p: jnp.asarray(v) for p, v in on.lane_values.items()})


class SettingsLog:
    """The run's metrics log for a sweep: one :class:`MetricsLog` per setting, in
    ``settings/<k>/metrics.jsonl`` (with that setting's metric sinks); a row's ``setting`` key
    picks its log and is not written."""

    def __init__(self, workdir: str, config, sweep: Sweep, seeds: list[int]):
        self.logs = []
        for k in range(sweep.n_settings):
            d = setting_dir(workdir, k)
            os.makedirs(d, exist_ok=True)
            cfg = sweep.setting_config(config, k)
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str))
            self.logs.append(MetricsLog(os.path.join(d, "metrics.jsonl"), make_sinks(cfg, d, seeds)))

    def write(self, rows) -> None:
        per: dict[int, list[dict]] = {}
        for r in rows:
            r = dict(r)
            per.setdefault(int(r.pop("setting")), []).append(r)
        for k, rs in per.items():
            self.logs[k].write(rs)

    def truncate(self, keep) -> None:
        for log in self.logs:
            log.truncate(keep)

    def close(self) -> None:
        for log in self.logs:
            log.close()


def setting_dir(workdir: str, k: int) -> str:
    return os.path.join(workdir, SETTINGS_DIR, str(k))


def write_outputs(workdir: str, config, sweep: Sweep, log: SettingsLog, score_available: bool,
                  reference: dict | None = None) -> dict:
    """Every setting's ``summary.json`` and ``eval.png`` in its directory, then the workdir's
    ``summary.json`` (every setting's values and results) and ``eval.png`` (every setting's curve)."""
    settings = []
    for k, sub in enumerate(log.logs):
        cfg = sweep.setting_config(config, k)
        s = summarize(sub, cfg, score_available=score_available, reference=reference)
        d = setting_dir(workdir, k)
        write_json_atomic(os.path.join(d, "summary.json"), s)
        plot_evaluations(sub, os.path.join(d, "eval.png"),
                         f"{config.offline.learner} -> {config.online.learner}, {sweep.label(k)}",
                         s["metric"], s["metric_label"])
        settings.append({"setting": k, "values": sweep.settings[k], **s})
    first = settings[0]
    summary = {"vmap_sweep": str(config.vmap_sweep), "paths": list(sweep.paths), "n_seeds": sweep.n_seeds,
               "metric": first["metric"], "metric_label": first["metric_label"], "settings": settings}
    title = f"{config.offline.learner} -> {config.online.learner} on {config.dataset.id}"
    plot_settings(log.logs, [sweep.label(k) for k in range(sweep.n_settings)],
                  os.path.join(workdir, "eval.png"), title, first["metric"], first["metric_label"])
    # the offline results of a shared offline phase are the same for every setting; a drop whose
    # window holds no evaluation after learning starts measured nothing (its warning says so)
    no_drop = any("transfer_drop_warning" in s for s in settings)
    panels = tuple(p for p in SENSITIVITY_PANELS if (sweep.sweeps_offline or p != "offline_final")
                   and not (no_drop and p == "transfer_drop"))
    plot_sensitivity(settings, list(sweep.paths), os.path.join(workdir, "sensitivity.png"),
                     f"{title}, {sweep.n_seeds} seeds per setting", first["metric_label"], panels)
    write_settings_csv(settings, list(sweep.paths), os.path.join(workdir, "settings.csv"))
    return summary


def write_settings_csv(settings: list[dict], paths: list[str], path: str) -> None:
    """One row per setting and seed: the setting, its values, the seed index, and its per-seed
    results (``sensitivity.png``'s data)."""
    keys = [k for k in SENSITIVITY_PANELS if any(k in s for s in settings)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", *paths, "seed_index", *keys])
        for s in settings:
            n = max(len(s.get(k, [])) for k in keys) if keys else 0
            for j in range(n):
                w.writerow([s["setting"], *(s["values"][p] for p in paths), j,
                            *(s[k][j] if k in s else "" for k in keys)])


def format_table(summary: dict) -> str:
    """One line per setting: its values, offline and online final means, mean drop."""
    lines = []
    for s in summary["settings"]:
        vals = ", ".join(f"{p}={format_value(v)}" for p, v in s["values"].items())
        parts = [f"offline {s['offline_final_mean']:.1f}" if "offline_final_mean" in s else None,
                 f"online {s['online_final_mean']:.1f}" if "online_final_mean" in s else None,
                 f"drop {s['transfer_drop_mean']:.1f}" if "transfer_drop_mean" in s else None]
        if "transfer_drop_warning" in s:
            parts[2] = "drop not measured (warning below)"
        lines.append(f"  setting {s['setting']} ({vals}): " + ", ".join(p for p in parts if p))
    return "\n".join(lines)
