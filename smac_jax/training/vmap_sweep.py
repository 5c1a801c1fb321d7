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
every setting's values and results, and its ``eval.png`` draws every setting's curve.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smac_jax.errors import ConfigError
from smac_jax.learners import make_learner, resolve_config
from smac_jax.learners.swept import HPARAMS, Swept, check_sweepable, with_hparams
from smac_jax.training.logger import MetricsLog, make_sinks, plot_evaluations, plot_settings
from smac_jax.training.summary import summarize

PHASES = ("offline", "online")
#: Float fields that are read outside the lane programs, with why.
NOT_SWEEPABLE = {"gamma": "evaluation reads it to put the returns obtained in the critic's units"}
SETTINGS_DIR = "settings"


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
        return ", ".join(f"{p.split('.')[-1]}={self.settings[k][p]:g}" for p in self.paths)

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
        return Swept(learner, self.lane_values(), fields, names)


def parse(config: ml_collections.ConfigDict) -> Sweep | None:
    """The config's sweep, or None; a malformed or unsweepable entry is a :class:`ConfigError`
    naming it."""
    spec = str(config.get("vmap_sweep", "") or "").strip()
    if not spec:
        return None
    paths, values = [], []
    for part in (p.strip() for p in spec.split(";")):
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
        if path in paths:
            raise ConfigError(f"vmap_sweep: {path} is listed twice")
        defaults = resolve_config(config[phase].learner, config[phase].agent)
        if field not in defaults:
            raise ConfigError(f"vmap_sweep: {field!r} is not a hyperparameter of {phase} learner "
                              f"{config[phase].learner!r} (known: {', '.join(sorted(defaults))})")
        current = defaults[field]
        if field in NOT_SWEEPABLE:
            raise ConfigError(f"vmap_sweep: {path} cannot be swept in one program: {NOT_SWEEPABLE[field]}")
        if isinstance(current, bool) or not isinstance(current, float):
            kind = "an integer (a size, count or period)" if isinstance(current, int) and not isinstance(current, bool) \
                else f"not a number ({current!r})"
            raise ConfigError(f"vmap_sweep: {path} is {kind}: it shapes the program, so it is swept as separate "
                              "runs (experiments/sweep.py --set)")
        try:
            nums = tuple(float(v) for v in vals.split(","))
        except ValueError:
            raise ConfigError(f"vmap_sweep: {path}: values must be numbers, got {vals.strip()!r}") from None
        if len(set(nums)) != len(nums):
            raise ConfigError(f"vmap_sweep: {path} lists a value twice ({vals.strip()})")
        paths.append(path)
        values.append(nums)
    if not paths:
        return None
    settings = tuple(dict(zip(paths, combo)) for combo in itertools.product(*values))
    sweep = Sweep(tuple(paths), settings, int(config.n_seeds))
    for k in range(sweep.n_settings):  # each setting's values pass the learner's range checks
        for phase in PHASES:
            own = {p.split(".")[-1]: v for p, v in sweep.settings[k].items() if p.startswith(phase + ".")}
            if own:
                try:
                    resolve_config(config[phase].learner, {**config[phase].agent, **own})
                except ConfigError as e:
                    raise ConfigError(f"vmap_sweep setting {k} ({sweep.label(k)}): {phase}.agent: {e}") from None
    return sweep


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
    if off.host_update_every or on.host_update_every:
        name = off.name if off.host_update_every else on.name
        raise ConfigError(f"vmap_sweep: learner {name!r} updates itself on the host between chunks, which one "
                          "program over settings cannot do; sweep it as separate runs (experiments/sweep.py --set)")
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


def write_outputs(workdir: str, config, sweep: Sweep, log: SettingsLog, score_available: bool) -> dict:
    """Every setting's ``summary.json`` and ``eval.png`` in its directory, then the workdir's
    ``summary.json`` (every setting's values and results) and ``eval.png`` (every setting's curve)."""
    settings = []
    for k, sub in enumerate(log.logs):
        cfg = sweep.setting_config(config, k)
        s = summarize(sub, cfg, score_available=score_available)
        d = setting_dir(workdir, k)
        with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump(s, f, indent=2)
        plot_evaluations(sub, os.path.join(d, "eval.png"),
                         f"{config.offline.learner} -> {config.online.learner}, {sweep.label(k)}",
                         s["metric"], s["metric_label"])
        settings.append({"setting": k, "values": sweep.settings[k], **s})
    first = settings[0]
    summary = {"vmap_sweep": str(config.vmap_sweep), "paths": list(sweep.paths), "n_seeds": sweep.n_seeds,
               "metric": first["metric"], "metric_label": first["metric_label"], "settings": settings}
    plot_settings(log.logs, [sweep.label(k) for k in range(sweep.n_settings)],
                  os.path.join(workdir, "eval.png"),
                  f"{config.offline.learner} -> {config.online.learner} on {config.dataset.id}",
                  first["metric"], first["metric_label"])
    return summary


def format_table(summary: dict) -> str:
    """One line per setting: its values, offline and online final means, mean drop."""
    lines = []
    for s in summary["settings"]:
        vals = ", ".join(f"{p}={v:g}" for p, v in s["values"].items())
        parts = [f"offline {s['offline_final_mean']:.1f}" if "offline_final_mean" in s else None,
                 f"online {s['online_final_mean']:.1f}" if "online_final_mean" in s else None,
                 f"drop {s['transfer_drop_mean']:.1f}" if "transfer_drop_mean" in s else None]
        lines.append(f"  setting {s['setting']} ({vals}): " + ", ".join(p for p in parts if p))
    return "\n".join(lines)
