"""The Markdown report of a sweep (``experiments/sweep.py``, docs/sweeps.md): budgets, the SMAC
paper's regret table, transfer drops and return curves, every figure with its data beside it."""
from __future__ import annotations

import csv
import datetime
import os

import numpy as np

from smac_jax.analysis.compare import curve, load_run, plot_runs, table
from smac_jax.analysis.metrics import aggregate_regret, normalized_regret, regrets_per_env
from smac_jax.errors import SmacJaxError
from smac_jax.training.sweep import PRETRAIN
from smac_jax.training.vmap_sweep import is_swept, learner_names, setting_of


def load_sweep(root: str) -> list[dict]:
    """The finished fine-tunes under ``root`` (pretrains left out), each a :func:`load_run` dict
    with ``workdir``, ``task`` (its directory under ``root``), ``offline`` and ``online``; sorted.
    Symbolic links are followed, so a report can be made of a chosen subset of runs kept
    elsewhere (``<root>/<task>/<name>`` linking to each run's workdir). Each setting of a
    ``vmap_sweep`` run (``<root>/<task>/<name>/settings/<k>``) is a fine-tune of its own, its
    learners named with the setting's values of their fields (``sac [actor_lr=0.0001]``)."""
    runs = []
    for dirpath, dirnames, files in os.walk(root, followlinks=True):
        # settings/2 before settings/10; no run lives inside a checkpoint directory
        dirnames[:] = sorted((d for d in dirnames if d != "checkpoints"),
                             key=lambda d: (int(d), "") if d.isdigit() else (-1, d))
        if os.path.basename(dirpath) == PRETRAIN:
            dirnames.clear()  # nor its settings, when the pretrain is a swept run
            continue
        if not {"summary.json", "config.json"} <= set(files):
            continue
        if is_swept(dirpath):  # its settings are walked as runs of their own
            continue
        run = load_run(dirpath)
        run.update(workdir=dirpath, task=_task(dirpath, root), setting=-1,
                   offline=run["config"]["offline"]["learner"], online=run["config"]["online"]["learner"])
        member = setting_of(dirpath)
        if member is not None:
            sweep_dir, k, sweep_config = member
            run.update(task=_task(sweep_dir, root), setting=k,
                       **learner_names(sweep_config, k))
        runs.append(run)
    return sorted(runs, key=lambda r: (r["task"], r["config"]["offline"]["learner"], r["config"]["online"]["learner"],
                                       r["workdir"] if r["setting"] < 0 else os.path.dirname(r["workdir"]), r["setting"]))


def _task(run_dir: str, root: str) -> str:
    """A run's task: its directory's path under ``root``; where ``root`` is a task's directory or a
    run's own workdir, the name of the run's parent directory."""
    task = os.path.relpath(os.path.dirname(run_dir), root)
    if task == os.curdir or task.startswith(os.pardir):
        task = os.path.basename(os.path.dirname(os.path.abspath(run_dir)))
    return task


def _pair(run: dict) -> str:
    return f"{run['offline']} -> {run['online']}"


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def regret_table(runs: list[dict], reps: int = 50_000, seed: int = 0) -> tuple[str, list[dict]]:
    """The SMAC paper's table: offline learners as rows, online learners as columns; each cell the
    normalised regret over the online evaluations (:func:`normalized_regret`: per task min-max
    normalised over every run of the sweep, mean over evaluations, seeds and tasks) with its IQM
    and 95% stratified-bootstrap interval over (seed, task) runs (:func:`aggregate_regret`); the
    lowest regret of each column in bold. Returns (Markdown, one row per cell for a CSV)."""
    scores: dict[str, dict[str, np.ndarray]] = {}
    for r in runs:
        _, vals = r["log"].evaluations("online", r["summary"]["metric"])
        scores.setdefault(r["task"], {})[_pair(r)] = vals
    regret = normalized_regret(scores)
    agg = aggregate_regret(scores, reps=reps, seed=seed, confidence=0.95)
    offs, ons = _ordered(r["offline"] for r in runs), _ordered(r["online"] for r in runs)
    best = {on: min((regret[f"{off} -> {on}"] for off in offs if f"{off} -> {on}" in regret), default=None)
            for on in ons}
    lines = ["| offline \\ online | " + " | ".join(ons) + " |", "|---|" + "---|" * len(ons)]
    rows = []
    for off in offs:
        cells = []
        for on in ons:
            m = f"{off} -> {on}"
            if m not in regret:
                cells.append("–")
                continue
            iqm = agg[m]["iqm"]
            value = f"{regret[m]:.3f}"
            if np.isclose(regret[m], best[on], rtol=0.0, atol=1e-12):
                value = f"**{value}**"
            cells.append(f"{value} (IQM {iqm.point:.3f} [{iqm.low:.3f}, {iqm.high:.3f}])")
            rows.append({"offline": off, "online": on, "normalized_regret": regret[m], "iqm": iqm.point,
                         "iqm_low": iqm.low, "iqm_high": iqm.high, "tasks": sum(m in s for s in scores.values())})
        lines.append(f"| {off} | " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def regret_per_seed(runs: list[dict]) -> tuple[str, list[dict]]:
    """Every run's regret per seed (the numbers the regret table averages): a Markdown table of one
    row per task and pair (seed numbers from each run's config) and one CSV row per seed."""
    scores: dict[str, dict[str, np.ndarray]] = {}
    by_label: dict[tuple[str, str], dict] = {}
    for r in runs:
        _, vals = r["log"].evaluations("online", r["summary"]["metric"])
        scores.setdefault(r["task"], {})[_pair(r)] = vals
        by_label[r["task"], _pair(r)] = r
    lines = ["| task | run | regret per seed (seed: value) | mean |", "|---|---|---|---|"]
    rows = []
    for task, by_pair in regrets_per_env(scores).items():
        for pair, reg in by_pair.items():
            first = int(by_label[task, pair]["config"].get("seed", 0))
            seeds = [first + i for i in range(len(reg))]
            lines.append(f"| {task} | {pair} | {', '.join(f'{s}: {v:.3f}' for s, v in zip(seeds, reg))} | "
                         f"{np.mean(reg):.3f} |")
            r = by_label[task, pair]
            rows += [{"task": task, "offline": r["offline"], "online": r["online"], "seed": s, "regret": float(v)}
                     for s, v in zip(seeds, reg)]
    return "\n".join(lines), rows


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def curves(runs: list[dict], task: str, png: str, csv_path: str) -> None:
    """One figure of every offline -> online pair of ``task`` (mean +- s.e. over seeds, the
    offline/online boundary marked) and its data as CSV (one row per run and evaluation)."""
    mine = {_pair(r): r for r in runs if r["task"] == task}
    plot_runs(mine, png, f"{task}: offline -> online")
    rows = []
    for label, r in mine.items():
        c = curve(r)
        for i in range(len(c["x"])):
            rows.append({"offline": r["offline"], "online": r["online"], "phase": c["phase"][i],
                         "step": int(c["step"][i]), "x": int(c["x"][i]), "mean": float(c["mean"][i]),
                         "se": float(c["se"][i]), "seeds": c["n"], "metric": c["metric"]})
    _write_csv(csv_path, rows)


def budgets(runs: list[dict]) -> str:
    """The runs' budgets from their config.json (values joined where runs differ)."""
    def values(fn):
        return ", ".join(str(v) for v in _ordered(fn(r["config"]) for r in runs))

    def net(c, phase):
        return f"{c[phase]['learner']} {'x'.join(str(h) for h in c[phase]['agent'].get('hidden_dims', ['?']))}"

    items = [
        ("offline updates", values(lambda c: c["offline"]["steps"])),
        ("online environment steps", values(lambda c: c["online"]["steps"])),
        ("seeds per run (vmapped)", values(lambda c: c["n_seeds"])),
        ("updates per environment step (online)", values(lambda c: c["online"]["utd"])),
        ("evaluation", values(lambda c: f"{c['eval']['episodes']} episode(s) every {c['offline']['eval_every']} "
                                         f"offline / {c['online']['eval_every']} online steps")),
        ("networks (hidden layers)", ", ".join(_ordered(net(r["config"], ph) for r in runs for ph in ("offline", "online")))),
        ("datasets", ", ".join(_ordered(f"{r['task']}: `{r['config']['dataset']['id']}`" for r in runs))),
    ]
    return "\n".join(["| budget | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in items])


def write_report(root: str, out: str | None = None, reps: int = 50_000, seed: int = 0,
                 date: str | None = None, overwrite: bool = False, command: str | None = None) -> str:
    """Write the sweep's report page (default ``<root>/report.md``; an ``out`` not ending in
    ``.md`` is a directory that gets ``report.md``) and its figures beside it
    (``<stem>_curves_<task>.png`` / ``.csv``, ``<stem>_regret.csv``, ``<stem>_regret_per_seed.csv``);
    returns the page's path. An existing page is replaced only with ``overwrite``; ``command``, if
    given, is named on the page as what wrote it."""
    out = out or os.path.join(root, "report.md")
    if not out.endswith(".md"):
        if os.path.exists(out) and not os.path.isdir(out):
            raise SmacJaxError(f"--out {out} is a file, not a page ending in .md or a directory")
        out = os.path.join(out, "report.md")
    if os.path.exists(out) and not overwrite:
        raise SmacJaxError(f"{out} exists; pass --overwrite to replace it (and the figures and data beside it), "
                           "or give another --out")
    runs = load_sweep(root)
    if not runs:
        raise SmacJaxError(f"no finished runs (summary.json) under {root}")
    seen: dict[tuple[str, str], str] = {}
    for r in runs:  # the tables hold one run per (task, pair): a second one would replace the first
        other = seen.setdefault((r["task"], _pair(r)), r["workdir"])
        if other != r["workdir"]:
            raise SmacJaxError(f"two finished runs of {_pair(r)} in task {r['task']!r} ({other} and {r['workdir']}); "
                               "a report compares one run per pair and task: put them under different task "
                               "directories or roots")
    datasets: dict[str, dict[str, str]] = {}
    for r in runs:  # regret normalises per task by the scores its runs reached: one dataset per task
        datasets.setdefault(r["task"], {}).setdefault(r["config"]["dataset"]["id"], r["workdir"])
    for task, ids in datasets.items():
        if len(ids) > 1:
            (a, wa), (b, wb) = list(ids.items())[:2]
            raise SmacJaxError(f"task {task!r} under {root} holds runs on different datasets ({a} in {wa}, {b} in {wb}); "
                               "a report normalises each task's scores together: put them under different task "
                               "directories")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    stem = os.path.splitext(out)[0]
    tasks = _ordered(r["task"] for r in runs)
    metric = "normalised score" if all(r["summary"]["metric"] == "eval_score" for r in runs) else \
        "evaluation return (some datasets have no reference scores)"
    if metric == "normalised score" and any(r["summary"].get("metric_label") == "success rate (%)" for r in runs):
        metric = "normalised score (the success rate in percent on binary-reward tasks)"
    try:
        regret_md, regret_rows = regret_table(runs, reps=reps, seed=seed)
    except ValueError as e:  # e.g. a pair with different seed counts in different tasks
        raise SmacJaxError(f"normalised regret of the runs under {root}: {e}") from None
    _write_csv(stem + "_regret.csv", regret_rows)
    per_seed_md, per_seed_rows = regret_per_seed(runs)
    _write_csv(stem + "_regret_per_seed.csv", per_seed_rows)
    page = [
        f"# Sweep report: {', '.join(tasks)}",
        "",
        f"Written {date or datetime.date.today().isoformat()} from the {len(runs)} finished fine-tunes in "
        f"`{root}`{f' by `{command}`' if command else ''}. Scores are the {metric} of deterministic "
        "evaluation episodes, per seed.",
        "",
        "## Budgets",
        "",
        budgets(runs),
        "",
        "## Normalised regret",
        "",
        "Lower is better; the lowest of each column in bold. Per task, every online evaluation score is "
        "min-max normalised by the smallest and largest score any run of this sweep reached there; a "
        "seed's regret is the mean of 1 - normalised score over its online evaluations (the one at "
        "hand-over included); a cell is the mean over seeds and tasks, with the interquartile mean over "
        "(seed, task) runs and its 95% stratified-bootstrap interval "
        f"({reps} replicates; docs/algorithms.md, Metrics).",
        "",
        regret_md,
        "",
        f"Data: [{os.path.basename(stem)}_regret.csv]({os.path.basename(stem)}_regret.csv).",
        "",
        "Per seed (normalised as above; the cells above are the means of these over seeds and tasks):",
        "",
        per_seed_md,
        "",
        f"Data: [{os.path.basename(stem)}_regret_per_seed.csv]({os.path.basename(stem)}_regret_per_seed.csv).",
        "",
        "## Transfer drop",
        "",
        "Per seed: max(0, last offline score - lowest online score in the first 10% of the online "
        "phase); smooth = a drop of at most 5 normalised points.",
        "",
        table({f"{r['task']}: {_pair(r)}": r for r in runs}),
        "",
        "## Return curves",
        "",
        "Mean +- standard error over seeds; offline update steps, then online environment steps (the "
        "dashed line is the hand-over).",
    ]
    for task in tasks:
        base = f"{os.path.basename(stem)}_curves_{task.replace(os.sep, '_')}"
        curves(runs, task, os.path.join(os.path.dirname(out), base + ".png"),
               os.path.join(os.path.dirname(out), base + ".csv"))
        page += ["", f"### {task}", "", f"![{task}]({base}.png)", "", f"Data: [{base}.csv]({base}.csv)."]
    with open(out, "w") as f:
        f.write("\n".join(page) + "\n")
    return out
