"""A grid of offline-to-online runs that pre-trains once per (task, offline learner, seed set) and
fine-tunes many (docs/sweeps.md).

Layout under ``root``::

    <task>/<offline>/pretrain/      the offline phase, run once: a run with online.steps = 0
    <task>/<offline>-<online>/      one fine-tune per online learner, seeded from the pretrain

A fine-tune's workdir is seeded with the pretrain's ``checkpoints/offline`` (its last step is
``offline.steps``), its ``score_model`` / ``cvae`` directories when present, the offline rows of its
``metrics.jsonl`` (byte for byte) and the fine-tune's own ``config.json``; ``pipeline.run(...,
resume=True)`` then finds the offline phase finished and hands over. The result is byte-identical
to a plain ``pipeline.run`` of the fine-tune's config. A ``vmap_sweep`` varies either online values
(a plain pretrain; every setting's ``settings/<k>/metrics.jsonl`` gets its offline rows) or offline
values (the pretrain is itself swept, each setting's rows from its own). Finished runs (``summary.json``) are
skipped and interrupted ones resumed, so a sweep is restarted by running the same command again.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable, Sequence

import ml_collections

from smac_jax.cli import apply_override
from smac_jax.data.dataset import load_dataset_from_config
from smac_jax.errors import ConfigError, DivergenceError, SmacJaxError, TransferError
from smac_jax.runtime import progress_bar
from smac_jax.training import pipeline, vmap_sweep
from smac_jax.training.checkpoint import Checkpointer
from smac_jax.training.dataset_factory import ensure_dataset

#: The config fields the offline phase (its training, evaluations and metrics rows) depends on:
#: they must be equal in the pretrain and in every fine-tune that starts from it.
OFFLINE_KEYS = ("dataset", "offline", "seed", "n_seeds", "eval", "ref_min_score", "ref_max_score")
#: What a fine-tune takes from its pretrain besides the offline checkpoints and metrics rows.
SHARED_MODELS = ("score_model", "cvae")
PRETRAIN = "pretrain"

ConfigFn = Callable[[str, str, str], ml_collections.ConfigDict]


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard={spec!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard={spec!r}: need 0 <= i < n")
    return i, n


def _no_repeats(**lists: Sequence[str]) -> None:
    """A name listed twice would run twice (and, in two shards, at once in one directory)."""
    for flag, names in lists.items():
        twice = sorted({n for n in names if list(names).count(n) > 1})
        if twice:
            raise ConfigError(f"--{flag} names {', '.join(twice)} more than once")


def groups(tasks: Sequence[str], offline: Sequence[str], shard: tuple[int, int] = (0, 1)) -> list[tuple[str, str]]:
    """The (task, offline learner) groups of this shard: group ``k`` of the task-major grid goes
    to shard ``k % n``, so each offline phase runs on one shard only."""
    _no_repeats(tasks=tasks, offline=offline)
    i, n = shard
    grid = [(t, o) for t in tasks for o in offline]
    return [g for k, g in enumerate(grid) if k % n == i]


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _as_json(config) -> dict:
    """A ConfigDict as its ``config.json`` data (a dict is taken as that already)."""
    return json.loads(pipeline._config_json(config)) if hasattr(config, "to_dict") else config


def _diff(a, b, prefix: str = "") -> list[str]:
    """The dotted keys where two JSON trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix[:-1]]


def check_offline_parts(reference, other, what: str) -> None:
    """``other`` (a config or ``config.json`` data) has ``reference``'s :data:`OFFLINE_KEYS`."""
    a, b = _as_json(reference), _as_json(other)
    diff = _diff({k: a.get(k) for k in OFFLINE_KEYS}, {k: b.get(k) for k in OFFLINE_KEYS})
    if offline_sweep(a) != offline_sweep(b):
        diff.append("vmap_sweep (its offline values)")
    if diff:
        raise ConfigError(f"{what}: the offline settings differ from the pretrain's ({', '.join(diff[:8])}); a "
                          "fine-tune must start from the same offline phase (dataset, offline learner and "
                          "budget, seeds, evaluation). Use another --root, or remove the pretrain to redo it")


def check_stored(workdir: str, config) -> None:
    """A run already in ``workdir`` was made with ``config`` (a finished one would be skipped)."""
    stored = _read_json(os.path.join(workdir, "config.json"))
    if stored is not None and stored != _as_json(config):
        diff = _diff(stored, _as_json(config))
        raise ConfigError(f"{workdir} holds a run of another config ({', '.join(diff[:8])} differ); use another "
                          "--root (a pretrain can be copied over to reuse it), or remove that run")


def pretrain_config(finetune_config) -> ml_collections.ConfigDict:
    """A fine-tune's config with ``online.steps = 0``: its run is the offline phase (then the
    hand-over and one evaluation)."""
    c = copy.deepcopy(finetune_config)
    c.online.steps = 0
    c.vmap_sweep = offline_sweep(c)  # a sweep of online values shares the plain offline phase
    return c


def offline_sweep(config) -> str:
    """The config's ``vmap_sweep`` if it varies offline values (the pretrain then runs them as
    lanes), else ``""`` (a config or ``config.json`` data)."""
    spec = str(config.get("vmap_sweep", "") or "")
    return spec if vmap_sweep.sweeps_offline(vmap_sweep.parse_spec(spec)) else ""


def seed_finetune(pretrain_dir: str, workdir: str, config, files_from: str | None = None) -> None:
    """Create ``workdir`` as a fine-tune whose offline phase is the pretrain's: its offline
    checkpoints, shared models, dataset record and offline metrics rows, and ``config``'s ``config.json``
    (``files_from``: where the checkpoints and models are, if not in ``pretrain_dir``). Built in
    a temporary directory renamed into place, so ``workdir`` exists only once fully seeded."""
    files_from = files_from or pretrain_dir
    tmp = workdir.rstrip(os.sep) + ".seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "checkpoints"))
    shutil.copytree(os.path.join(files_from, "checkpoints", "offline"), os.path.join(tmp, "checkpoints", "offline"))
    for name in SHARED_MODELS:
        src = os.path.join(files_from, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(tmp, name))
    if os.path.exists(os.path.join(pretrain_dir, pipeline.DATASET_FILE)):  # the fine-tune checks it is on the same data
        shutil.copy(os.path.join(pretrain_dir, pipeline.DATASET_FILE), os.path.join(tmp, pipeline.DATASET_FILE))
    # a swept fine-tune (vmap_sweep) logs per setting: its offline rows are the shared offline
    # phase's (online values), or that setting's of the swept pretrain (offline values)
    grid = vmap_sweep.parse_spec(config.get("vmap_sweep", ""))
    logs = {os.path.join(tmp, "metrics.jsonl"): os.path.join(pretrain_dir, "metrics.jsonl")}
    if grid:
        logs = {os.path.join(vmap_sweep.setting_dir(tmp, k), "metrics.jsonl"):
                os.path.join(vmap_sweep.setting_dir(pretrain_dir, k) if vmap_sweep.sweeps_offline(grid) else pretrain_dir,
                             "metrics.jsonl") for k in range(len(vmap_sweep.grid_settings(grid)))}
    for path, src in logs.items():
        with open(src) as f:
            lines = f.read().splitlines(keepends=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(line for line in lines if line.strip() and json.loads(line)["phase"] == "offline")
    with open(os.path.join(tmp, "config.json"), "w") as f:
        f.write(pipeline._config_json(config))
    os.rename(tmp, workdir)


def _final_offline_step(pretrain_dir: str) -> int | None:
    ck = Checkpointer(os.path.join(pretrain_dir, "checkpoints"))
    try:
        return ck.latest_step("offline")
    finally:
        ck.close()


def _score(summary: dict, key: str) -> str:
    metric = "score" if summary.get("metric") == "eval_score" else "return"
    if "settings" in summary:  # a vmap_sweep fine-tune: the range over its settings
        values = [s[f"{key}_mean"] for s in summary["settings"] if s.get(f"{key}_mean") is not None]
        return (f"{len(summary['settings'])} settings, {key.replace('_', ' ')} {metric} {min(values):.1f} to "
                f"{max(values):.1f}") if values else f"no {key}"
    value = summary.get(f"{key}_mean")
    return f"{key.replace('_', ' ')} {metric} {value:.1f}" if value is not None else f"no {key}"


def _adopt(node, stored: dict) -> None:
    """Set each field of ``node`` (a ConfigDict) that ``stored`` (``config.json`` data) holds to the
    stored value; a value the field cannot take is left as it is (the resume then names it)."""
    for k, v in stored.items():
        if k not in node:
            continue
        current = node[k]
        if isinstance(current, ml_collections.ConfigDict) and isinstance(v, dict):
            _adopt(current, v)
            continue
        try:
            node[k] = tuple(v) if isinstance(current, tuple) and isinstance(v, list) else v
        except (TypeError, ValueError):
            pass


def _has_field(config, key: str) -> bool:
    node = config
    try:
        for part in key.split("."):
            node = node[part]
    except (KeyError, AttributeError, TypeError):
        return False
    return True


def run_sweep(tasks: Sequence[str], offline: Sequence[str], online: Sequence[str], root: str, config_fn: ConfigFn,
              *, n_seeds: int | None = None, overrides: Sequence[str] = (), shard: tuple[int, int] = (0, 1),
              progress: bool = True, pretrain_from: str | None = None) -> list[dict]:
    """Run this shard's part of the grid ``tasks x offline x online`` under ``root``.

    ``config_fn(task, offline, online)`` builds a run's config; ``n_seeds`` (when given) and the
    ``overrides`` (``KEY=VALUE``, :func:`smac_jax.cli.apply_override`) are applied to every one.
    ``pretrain_from``: another sweep's root; a group without a pretrain under ``root`` starts from a
    copy of that root's finished pretrain (its offline settings must be this sweep's), so fine-tunes
    with other online settings (replay, learning starts, ...) reuse one offline phase.
    Returns one record per run (pretrains included): task, offline, online (None for a pretrain),
    workdir, status ("skipped", "resumed", "ran" or "failed: ..."), summary. A run that diverges or
    cannot be handed over is recorded as failed and the sweep goes on; the other errors stop it.
    """
    if not online:
        raise ConfigError("a sweep needs at least one online learner")
    _no_repeats(tasks=tasks, offline=offline, online=online)

    def make(task, off, on, only_shared_online_fields=False):
        c = config_fn(task, off, on)
        if n_seeds is not None:
            c.n_seeds = n_seeds
        for a in overrides:
            if only_shared_online_fields and a.startswith("online.") and not _has_field(c, a.partition("=")[0]):
                continue  # a field of this sweep's online learners that the pretrain's learner lacks
            apply_override(c, a)
        return c

    mine = groups(tasks, offline, shard)
    if not mine:
        n_groups = len(tasks) * len(offline)
        raise ConfigError(f"--shard {shard[0]}/{shard[1]}: the grid has {n_groups} task x offline-learner group(s), "
                          f"one per shard at most, so shard {shard[0]} has nothing to run; use at most {n_groups} shards")
    plan = {}  # every config built and checked before anything runs
    copies = []  # (source, destination) pretrains to copy from pretrain_from
    for task, off in mine:
        configs = {on: make(task, off, on) for on in online}
        pre_dir = os.path.join(root, task, off, PRETRAIN)
        pre_cfg = pretrain_config(configs[online[0]])
        stored = _read_json(os.path.join(pre_dir, "config.json"))
        if pretrain_from and stored is None:
            src = os.path.join(pretrain_from, task, off, PRETRAIN)
            if _read_json(os.path.join(src, "summary.json")) is None:
                raise ConfigError(f"pretrain_from: {src} holds no finished pretrain")
            stored = _read_json(os.path.join(src, "config.json"))
            check_offline_parts(stored, pre_cfg, f"the pretrain in {src}")
            copies.append((src, pre_dir))
        if stored is not None:
            check_offline_parts(stored, pre_cfg, f"the pretrain in {pre_dir}")
            if stored["online"]["learner"] != online[0]:  # made by a sweep with other online learners
                pre_cfg = pretrain_config(make(task, off, stored["online"]["learner"], only_shared_online_fields=True))
            if _read_json(os.path.join(pre_dir, "summary.json")) is None:
                # an unfinished pretrain resumes with its own config: the fields it shares with this command's
                # (checked above) and, for the rest (online settings, sinks), what it was started with
                _adopt(pre_cfg, {k: v for k, v in stored.items() if k not in OFFLINE_KEYS})
        for on, c in configs.items():
            paths = [p for p, _ in vmap_sweep.parse_spec(c.get("vmap_sweep", ""))]
            if len({p.split(".")[0] for p in paths}) > 1:
                raise ConfigError("vmap_sweep in a sweep varies either offline values (the pretrain runs them as "
                                  "lanes and every fine-tune continues them) or online values (every fine-tune "
                                  "from the one plain pretrain), not both; got " + ", ".join(paths))
            pipeline.validate_config(c)
            check_offline_parts(pre_cfg, c, f"{task} {off}->{on}")
            check_stored(os.path.join(root, task, f"{off}-{on}"), c)
        plan[task, off] = pre_dir, pre_cfg, configs
    for src, dst in copies:  # built beside, renamed into place: a pretrain exists only when whole
        shutil.rmtree(dst + ".copying", ignore_errors=True)
        shutil.copytree(src, dst + ".copying")
        os.rename(dst + ".copying", dst)
    bar = progress_bar(total=len(mine) * (1 + len(online)), disable=not progress, unit="run", desc="sweep",
                       dynamic_ncols=True)
    records: list[dict] = []

    def note(task, off, on, workdir, status, summary=None):
        name = f"{task} {off}->{on}" if on else f"{task} {off} pretrain"
        shown = _score(summary, "online_final" if on else "offline_final") if summary else ""
        bar.write(f"[sweep] {name}: {status}" + (f" ({shown})" if shown else ""))
        records.append(dict(task=task, offline=off, online=on, workdir=workdir, status=status, summary=summary))
        bar.update(1)

    def launch(config, workdir, resumed: bool, task, off, on) -> dict | None:
        try:
            summary = pipeline.run(config, workdir, resume=True, progress=progress)
        except (DivergenceError, TransferError) as e:
            note(task, off, on, workdir, f"failed: {e}")
            return None
        note(task, off, on, workdir, "resumed" if resumed else "ran", summary)
        return summary

    try:
        for task, off in mine:
            pre_dir, pre_cfg, configs = plan[task, off]
            group_dir = os.path.join(root, task)
            todo = [on for on in online
                    if not os.path.exists(os.path.join(group_dir, f"{off}-{on}", "summary.json"))]
            if todo:
                ensure_dataset(pre_cfg.dataset)
                dataset = load_dataset_from_config(pre_cfg.dataset)
                for on in todo:  # what needs the data (swept fields, models to load, hand-over shapes), before
                    pipeline.check_learners(configs[on], dataset)  # the pretrain runs or a fine-tune is seeded
                del dataset
            pre_summary = _read_json(os.path.join(pre_dir, "summary.json"))
            if pre_summary is not None:
                note(task, off, None, pre_dir, "skipped", pre_summary)
            elif not todo:
                note(task, off, None, pre_dir, "skipped (every fine-tune is finished)")
            else:
                pre_summary = launch(pre_cfg, pre_dir, os.path.isdir(pre_dir), task, off, None)
            for on in online:
                wd = os.path.join(group_dir, f"{off}-{on}")
                done = _read_json(os.path.join(wd, "summary.json"))
                if done is not None:
                    note(task, off, on, wd, "skipped", done)
                    continue
                resumed = os.path.isdir(wd)
                if not resumed:
                    if pre_summary is None:
                        note(task, off, on, wd, "failed: its pretrain failed")
                        continue
                    final = _final_offline_step(pre_dir)
                    if final != configs[on].offline.steps:
                        raise SmacJaxError(f"the pretrain in {pre_dir} ends at offline step {final}, the "
                                           f"fine-tune needs {configs[on].offline.steps}")
                    seed_finetune(pre_dir, wd, configs[on])
                launch(configs[on], wd, resumed, task, off, on)
    finally:
        bar.close()
    failed = [r for r in records if r["status"].startswith("failed")]
    if failed:
        names = ", ".join(f"{r['task']} {r['offline']}->{r['online'] or 'pretrain'}" for r in failed)
        raise SmacJaxError(f"{len(failed)} of the sweep's runs failed ({names}); the others are done, see above")
    return records
