"""Run outputs: metrics per seed (JSONL), the evaluation plot, and the progress bar."""
from __future__ import annotations

import json
import os
import warnings
from typing import Iterable

import numpy as np


class MetricsLog:
    """Append-only JSONL of rows ``{"phase", "step", "seed", ...}``; resumable (rows past a
    checkpoint are dropped by :meth:`truncate`)."""

    def __init__(self, path: str):
        self.path = path
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

    def truncate(self, keep) -> None:
        """Keep only the rows for which ``keep(row)`` is true, rewriting the file."""
        self.rows = [r for r in self.rows if keep(r)]
        with open(self.path, "w") as f:
            for r in self.rows:
                f.write(json.dumps(r) + "\n")

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


def plot_evaluations(log: MetricsLog, path: str, title: str = "", key: str = "eval_return") -> None:
    """Evaluation score over steps: mean and standard error over seeds, offline/online boundary marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    off_steps, off = log.evaluations("offline", key)
    on_steps, on = log.evaluations("online", key)
    boundary = int(off_steps.max()) if len(off_steps) else 0
    for steps, vals, label, color in (
        (off_steps, off, "offline", "tab:blue"),
        (on_steps + boundary, on, "online", "tab:red"),
    ):
        if len(steps) == 0:
            continue
        mean = np.nanmean(vals, 0)
        se = np.nanstd(vals, 0) / np.sqrt(max(vals.shape[0], 1))
        ax.plot(steps, mean, color=color, label=f"{label} (n={vals.shape[0]} seeds)")
        ax.fill_between(steps, mean - se, mean + se, color=color, alpha=0.25)
    if len(off_steps) and len(on_steps):
        ax.axvline(boundary, color="k", ls="--", lw=1, label="offline -> online")
    ax.set_xlabel("update step (offline) / environment step (online), concatenated")
    ax.set_ylabel("normalised score" if key == "eval_score" else "evaluation return")
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
