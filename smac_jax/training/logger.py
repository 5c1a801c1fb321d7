"""Run outputs: metrics per seed (JSONL), the evaluation plot, and the progress bar; optional
sinks that receive every row the metrics log writes (TensorBoard, Weights & Biases)."""
from __future__ import annotations

import json
import os
import secrets
import time
import warnings
from typing import Iterable, Protocol

import numpy as np


class Sink(Protocol):
    """Somewhere else the rows go (:func:`make_sinks`). A sink sees only the rows written from
    the moment it is attached: rows already in the file when a run resumes are never re-sent."""

    def write(self, rows: list[dict]) -> None: ...

    def truncate(self, kept: list[dict]) -> None:
        """The metrics log now holds only ``kept`` (a resume cut the rows past its checkpoint)."""

    def close(self) -> None: ...


class MetricsLog:
    """Append-only JSONL of rows ``{"phase", "step", "seed", ...}``; resumable (rows past a
    checkpoint are dropped by :meth:`truncate`). Every row :meth:`write` appends also goes to each
    of ``sinks``; :meth:`close` closes them."""

    def __init__(self, path: str, sinks: Iterable[Sink] = ()):
        self.path = path
        self.sinks = list(sinks)
        self.rows: list[dict] = []
        if os.path.exists(path):
            with open(path) as f:
                lines = [line for line in f.read().split("\n")]
            numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
            for k, (lineno, line) in enumerate(numbered):
                try:
                    self.rows.append(json.loads(line))
                except json.JSONDecodeError:
                    if k == len(numbered) - 1:  # a write cut short by a kill: that row is lost, nothing else
                        warnings.warn(f"{path}: dropping the torn last line {lineno} (a write was interrupted)")
                        continue
                    from smac_jax.errors import SmacJaxError

                    raise SmacJaxError(f"{path}: line {lineno} is not valid JSON; the metrics log is corrupt "
                                       "(repair or remove that line, or start a fresh --workdir)") from None

    def write(self, rows: Iterable[dict]) -> None:
        rows = [{k: _plain(v) for k, v in r.items()} for r in rows]
        self.rows.extend(rows)
        with open(self.path, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        for sink in self.sinks:
            sink.write(rows)

    def truncate(self, keep) -> None:
        """Keep only the rows for which ``keep(row)`` is true, rewriting the file."""
        self.rows = [r for r in self.rows if keep(r)]
        with open(self.path, "w") as f:
            for r in self.rows:
                f.write(json.dumps(r) + "\n")
        for sink in self.sinks:
            sink.truncate(self.rows)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def evaluations(self, phase: str, key: str = "eval_return") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values[seed, step]) of one phase's evaluation rows."""
        rows = [r for r in self.rows if r["phase"] == phase and key in r]
        steps = sorted({r["step"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        vals = np.full((len(seeds), len(steps)), np.nan)
        for r in rows:
            vals[seeds.index(r["seed"]), steps.index(r["step"])] = r[key]
        return np.asarray(steps), vals


def _plain(v):
    if isinstance(v, (np.generic, np.ndarray)):
        return v.item() if np.ndim(v) == 0 else np.asarray(v).tolist()
    if hasattr(v, "shape") and getattr(v, "shape", None) == ():
        return float(v)
    return v


# -- optional sinks ----------------------------------------------------------------------------
#: config.log flag -> (the module it imports, the pip extra that installs it).
SINK_PACKAGES = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}
WANDB_MODES = ("offline", "online", "disabled")


def _import_sink(flag: str):
    import importlib

    from smac_jax.errors import ConfigError

    module, extra = SINK_PACKAGES[flag]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"log.{flag}=True needs the {module!r} package ({e}); install it with "
                          f'pip install "smac_jax[{extra}]"') from None


def check_sinks(config) -> None:
    """The sinks ``config.log`` turns on can be made: their packages import, the W&B mode is known."""
    from smac_jax.errors import ConfigError

    if "log" not in config:
        raise ConfigError("the config has no 'log' section (configs/o2o.py defines it, every sink off by default)")
    log = config.log
    if log.wandb and log.wandb_mode not in WANDB_MODES:
        raise ConfigError(f"log.wandb_mode must be one of {WANDB_MODES}, got {log.wandb_mode!r}")
    for flag in SINK_PACKAGES:
        if log[flag]:
            _import_sink(flag)


def make_sinks(config, workdir: str, seeds: list[int]) -> list[Sink]:
    """The sinks ``config.log`` turns on."""
    check_sinks(config)
    log = config.log
    offline_steps = int(config.offline.steps)
    sinks: list[Sink] = []
    if log.tensorboard:
        sinks.append(TensorBoardSink(os.path.join(workdir, "tensorboard"), offline_steps))
    if log.wandb:
        sinks.append(WandbSink(workdir, config, seeds, log.wandb_project, log.wandb_mode, offline_steps))
    return sinks


def global_step(row: dict, offline_steps: int) -> int:
    """The x axis of both phases together: the update step offline, ``offline_steps`` + the
    environment step online (the offline phase's last point and the online phase's first share it)."""
    return int(row["step"]) + (offline_steps if row["phase"] == "online" else 0)


def _scalars(row: dict) -> dict[str, float]:
    """``<phase>/<metric>`` -> value for the row's scalar numbers (``eval_return``, losses, ...)."""
    return {f"{row['phase']}/{k}": float(v) for k, v in row.items()
            if k not in ("phase", "step", "seed") and isinstance(v, (int, float))}


class TensorBoardSink:
    """Event files per seed, ``<logdir>/seed_<k>``, scalars tagged ``<phase>/<metric>`` over
    :func:`global_step`; flushed after every write (a killed run loses nothing written).

    After a resume cut the metrics log back to a checkpoint (:meth:`truncate`), each seed's next
    event file starts with a purge marker at the first step past the kept rows: TensorBoard's
    Python loader (``--load_fast=false``, ``EventAccumulator``) hides the cut points at once; the
    default (Rust) loader ignores the marker and replaces a tag's points from a step on when that
    step is logged again, so the cut points show until the resumed run re-reaches them."""

    def __init__(self, logdir: str, offline_steps: int):
        self.logdir, self.offline_steps = logdir, offline_steps
        self.writers: dict[int, object] = {}
        self.purge_from: dict[int, int] = {}  # seed -> first global step cut by a resume
        self._purge_default: int | None = None  # the same for seeds without kept rows

    def _writer(self, seed: int):
        if seed not in self.writers:
            from tensorboardX import SummaryWriter

            purge = self.purge_from.get(seed, self._purge_default)
            # the nanoseconds keep a file opened in the same second as the last one apart from it, and
            # after it in name order (the order TensorBoard reads a run's files in)
            self.writers[seed] = SummaryWriter(os.path.join(self.logdir, f"seed_{seed}"), purge_step=purge,
                                               filename_suffix=f".{time.time_ns()}")
        return self.writers[seed]

    def write(self, rows: list[dict]) -> None:
        touched = set()
        for r in rows:
            w = self._writer(r["seed"])
            step = global_step(r, self.offline_steps)
            for tag, v in _scalars(r).items():
                w.add_scalar(tag, v, step)
            touched.add(r["seed"])
        for seed in touched:
            self.writers[seed].flush()

    def truncate(self, kept: list[dict]) -> None:
        self.close()  # the next write opens new event files, each starting with its purge marker
        last: dict[int, int] = {}
        for r in kept:
            last[r["seed"]] = max(last.get(r["seed"], -1), global_step(r, self.offline_steps))
        self.purge_from = {seed: s + 1 for seed, s in last.items()}
        self._purge_default = 0

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers = {}


class WandbSink:
    """One W&B run per seed (name ``seed_<k>``), grouped by the workdir's name, config = the run
    config; history keys ``<phase>/<metric>`` over :func:`global_step`. The run ids are kept in
    ``<workdir>/wandb/smac_jax_runs.json`` so that a resumed run logs into the same W&B runs
    (``resume="allow"``; W&B drops points at steps it already holds). ``mode="offline"`` needs
    no network or account: the runs are written under ``<workdir>/wandb/`` and ``wandb sync``
    uploads them later."""

    def __init__(self, workdir: str, config, seeds: list[int], project: str, mode: str, offline_steps: int):
        import wandb

        from smac_jax.errors import ConfigError

        self.offline_steps = offline_steps
        ids_path = os.path.join(workdir, "wandb", "smac_jax_runs.json")
        ids: dict[str, str] = {}
        if os.path.exists(ids_path):
            with open(ids_path) as f:
                ids = json.load(f)
        for seed in seeds:
            ids.setdefault(str(seed), secrets.token_hex(4))
        os.makedirs(os.path.dirname(ids_path), exist_ok=True)
        with open(ids_path, "w") as f:
            json.dump(ids, f, indent=2)
        group = os.path.basename(os.path.abspath(workdir))
        self.runs: dict[int, object] = {}
        try:
            for i, seed in enumerate(seeds):
                self.runs[seed] = wandb.init(
                    project=project, dir=workdir, mode=mode, group=group, name=f"seed_{seed}", id=ids[str(seed)],
                    resume="allow", reinit="create_new", config=config.to_dict(),
                    # console="off": the progress bar and errors print as without W&B; system
                    # metrics are sampled once per process (by the first seed's run), not per seed
                    settings=wandb.Settings(console="off", x_disable_stats=i > 0))
        except wandb.errors.Error as e:
            self.close()
            raise ConfigError(f"log.wandb: W&B could not start a run in mode {mode!r}: {e} "
                              "(log.wandb_mode='offline' needs no network or account)") from None

    def write(self, rows: list[dict]) -> None:
        for r in rows:
            self.runs[r["seed"]].log(_scalars(r), step=global_step(r, self.offline_steps))

    def truncate(self, kept: list[dict]) -> None:
        pass  # W&B keeps what it was sent; a resumed run's re-logged steps are dropped by W&B

    def close(self) -> None:
        for run in self.runs.values():
            run.finish()
        self.runs = {}


#: Training diagnostics drawn under the evaluation curve when a run logs them: (panel title, the
#: metrics drawn in it). SMAC's tell whether its score-matching term is active (the cosine between
#: grad_a Q and the score, alpha_psi, the two magnitudes) and whether its critic stays near the
#: data's discounted Monte-Carlo return; every learner with a critic logs, at each evaluation, its
#: value at the evaluation's start states against the discounted return its policy then obtained
#: (above it: overestimation). A run that logs none of a panel's metrics gets no panel.
DIAGNOSTIC_PANELS = (
    ("cos(grad_a Q, score)", ("grad_q_score_cos",)),
    ("alpha_psi (mean over states)", ("alpha_mean",)),
    ("|grad_a Q| and |score|", ("grad_q_norm", "score_norm")),
    ("Q against the Monte-Carlo return", ("q_mean", "mc_return_mean")),
    ("Q(s0, pi(s0)) against the return obtained", ("q_start", "eval_discounted_return")),
)


def diagnostic_panels(log: MetricsLog) -> list[tuple[str, tuple[str, ...]]]:
    """The :data:`DIAGNOSTIC_PANELS` all of whose metrics the log holds (so the Q panel appears only
    where a Monte-Carlo return is logged, not for every actor-critic that logs ``q_mean``)."""
    keys = {k for r in log.rows for k in r}
    return [(title, metrics) for title, metrics in DIAGNOSTIC_PANELS if all(m in keys for m in metrics)]


def standard_error(vals, axis: int = 0) -> np.ndarray:
    """Standard error of the mean along ``axis``: the sample standard deviation (ddof=1) over the
    finite values divided by the square root of their count; 0 where there is one value."""
    vals = np.asarray(vals, np.float64)
    n = np.sum(np.isfinite(vals), axis=axis)
    mean = np.nanmean(vals, axis=axis, keepdims=True)
    ss = np.nansum((vals - mean) ** 2, axis=axis)
    return np.sqrt(ss / np.maximum(n - 1, 1)) / np.sqrt(np.maximum(n, 1))


def _phase_curves(log: MetricsLog, key: str):
    """[(steps on the concatenated axis, values[seed, step], phase)] of ``key``, offline then online."""
    off_steps, off = log.evaluations("offline", key)
    on_steps, on = log.evaluations("online", key)
    boundary = _boundary(log)
    return [(s, v, p) for s, v, p in ((off_steps, off, "offline"), (on_steps + boundary, on, "online")) if len(s)]


def _boundary(log: MetricsLog) -> int:
    steps = [r["step"] for r in log.rows if r["phase"] == "offline"]
    return int(max(steps)) if steps else 0


def plot_evaluations(log: MetricsLog, path: str, title: str = "", key: str = "eval_return",
                     ylabel: str | None = None) -> None:
    """Evaluation score over steps: mean and standard error over seeds, offline/online boundary
    marked; below it, the run's :func:`diagnostic_panels` (mean over seeds), if it logs any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = diagnostic_panels(log)
    if panels:
        fig = plt.figure(figsize=(7, 4 + 2.4 * ((len(panels) + 1) // 2)))
        grid = fig.add_gridspec(1 + (len(panels) + 1) // 2, 2, height_ratios=[4] + [2.4] * ((len(panels) + 1) // 2))
        ax = fig.add_subplot(grid[0, :])
        small = [fig.add_subplot(grid[1 + i // 2, i % 2]) for i in range(len(panels))]
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        small = []
    colors = {"offline": "tab:blue", "online": "tab:red"}
    curves = _phase_curves(log, key)
    for steps, vals, phase in curves:
        mean = np.nanmean(vals, 0)
        se = standard_error(vals, 0)
        ax.plot(steps, mean, color=colors[phase], label=f"{phase} (n={vals.shape[0]} seeds)")
        ax.fill_between(steps, mean - se, mean + se, color=colors[phase], alpha=0.25)
    boundary = _boundary(log)
    both = len({phase for _, _, phase in curves}) == 2
    if both:
        ax.axvline(boundary, color="k", ls="--", lw=1, label="offline -> online")
    ax.set_xlabel("update step (offline) / environment step (online), concatenated")
    ax.set_ylabel(ylabel or ("normalised score" if key == "eval_score" else "evaluation return"))
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    for sub, (panel_title, metrics) in zip(small, panels):
        for metric, style in zip(metrics, ("-", "--")):
            for steps, vals, phase in _phase_curves(log, metric):
                sub.plot(steps, np.nanmean(vals, 0), style, color=colors[phase],
                         label=metric if phase == "offline" or len(metrics) > 1 else None)
        if both:
            sub.axvline(boundary, color="k", ls="--", lw=0.8)
        sub.set_xlim(ax.get_xlim())
        sub.locator_params(axis="x", nbins=5)
        sub.set_title(panel_title, fontsize=9)
        sub.tick_params(labelsize=7)
        sub.grid(alpha=0.3)
        if len(metrics) > 1:
            handles, labels = sub.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            sub.legend(unique.values(), unique.keys(), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_settings(logs: list[MetricsLog], labels: list[str], path: str, title: str = "", key: str = "eval_return",
                  ylabel: str | None = None) -> None:
    """Evaluation score over steps for several settings of one run (``vmap_sweep``): one colour per
    setting, mean and standard error over its seeds, offline and online phases joined at the
    hand-over (dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(logs), 1)))
    boundary = None
    for log, label, color in zip(logs, labels, colors):
        for i, (steps, vals, phase) in enumerate(_phase_curves(log, key)):
            mean = np.nanmean(vals, 0)
            se = standard_error(vals, 0)
            ax.plot(steps, mean, color=color, label=f"{label} (n={vals.shape[0]} seeds)" if i == 0 else None)
            ax.fill_between(steps, mean - se, mean + se, color=color, alpha=0.15)
            if phase == "online":
                boundary = _boundary(log)
    if boundary is not None and any(r["phase"] == "offline" for log in logs for r in log.rows):
        ax.axvline(boundary, color="k", ls="--", lw=1, label="offline -> online")
    ax.set_xlabel("update step (offline) / environment step (online), concatenated")
    ax.set_ylabel(ylabel or ("normalised score" if key == "eval_score" else "evaluation return"))
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: The per-seed results a sweep's sensitivity figure draws: summary key -> panel title.
SENSITIVITY_PANELS = {"offline_final": "last offline evaluation", "online_final": "last online evaluation",
                      "transfer_drop": "transfer drop"}


def format_value(v: float) -> str:
    """A swept value as labels show it: ``{v:g}`` where that names the lane's float32 value, else
    the shortest digits that do (so that distinct settings never share a label)."""
    short = f"{v:g}"
    if np.float32(float(short)) == np.float32(v):
        return short
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def plot_sensitivity(settings: list[dict], paths: list[str], path: str, title: str = "", ylabel: str = "",
                     panels: tuple[str, ...] = tuple(SENSITIVITY_PANELS)) -> None:
    """A sweep's results against its values (``vmap_sweep``): one panel per result in ``panels``
    (keys of each setting's summary, a value per seed), the first swept field on the x axis (log
    scale when its positive values span 10x or more), one line per combination of the other
    fields; every seed a dot, the mean a line with standard-error bars. ``settings``: the
    sweep summary's entries (``values`` and the per-seed results)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in panels if all(p in s for s in settings)]
    if not panels or not settings:
        return
    x_path, rest = paths[0], paths[1:]
    groups: dict[tuple, list[dict]] = {}
    for s in settings:
        groups.setdefault(tuple(s["values"][p] for p in rest), []).append(s)
    xs = np.asarray(sorted({s["values"][x_path] for s in settings}), np.float64)
    log_x = bool(xs.min() > 0 and xs.max() >= 10 * xs.min())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(groups), 1)))
    for ax, key in zip(axes[0], panels):
        for (others, members), color in zip(groups.items(), colors):
            members = sorted(members, key=lambda s: s["values"][x_path])
            x = np.asarray([s["values"][x_path] for s in members], np.float64)
            vals = [np.asarray(s[key], np.float64) for s in members]
            for xi, v in zip(x, vals):
                ax.scatter(np.full(v.shape, xi), v, color=color, s=12, alpha=0.5, linewidths=0)
            mean = np.asarray([v.mean() for v in vals])
            se = np.asarray([standard_error(v) for v in vals])
            label = ", ".join(f"{p.split('.')[-1]}={format_value(o)}" for p, o in zip(rest, others)) or None
            ax.errorbar(x, mean, yerr=se, color=color, marker="o", ms=4, capsize=3, label=label)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(xs, [format_value(v) for v in xs])  # the swept values themselves
        ax.set_xticks([], minor=True)
        ax.set_xlabel(x_path)
        ax.set_title(SENSITIVITY_PANELS.get(key, key), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if rest:
        axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
