"""Policy-landscape figures of finished offline-to-online runs (docs/analysis.md).

    # 1-D interpolation offline final -> online final, per run, and the t-SNE of all checkpoints:
    python experiments/landscape.py --workdirs=runs/smac-sac,runs/smac-td3bc --out=runs/landscape
    # plus the 2-D plane through the offline, SAC-fine-tuned and TD3+BC-fine-tuned actors:
    python experiments/landscape.py --plane=runs/smac-sac,runs/smac-td3bc --out=runs/landscape

Writes into --out: interpolation.png / .csv / _summary.json, plane.png / .npz, tsne.png / .csv.
Every grid is evaluated with the deterministic policy, all points of an analysis as one batch
(smac_jax.analysis.landscape.evaluate_stacked). Bad input: one line ``error: ...``, exit status 2.
"""
from __future__ import annotations

import csv
import json
import os

import jax
import numpy as np
from absl import flags, logging

from smac_jax.cli import earlier_outputs, fail, remove_outputs, run_cli
from smac_jax.analysis import landscape as ls
from smac_jax.runtime import tune_host_allocator

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Run workdirs: the 1-D interpolation from each run's final offline "
                              "actor to its final online actor, and the t-SNE of their checkpoints.")
_PLANE = flags.DEFINE_list("plane", [], "Two run workdirs A,B fine-tuned from the same offline checkpoint (e.g. "
                           "SAC and TD3+BC online): the plane through A's final offline actor (0,0), A's final "
                           "online actor (1,0) and B's final online actor (0,1).")
_OUT = flags.DEFINE_string("out", None, "Output directory for the figures and their data.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the figures and data an earlier run wrote to --out "
                               "(all of them, so none of the earlier run's stays beside the new ones).")
OUTPUTS = ("interpolation.png", "interpolation.csv", "interpolation_summary.json", "plane.png", "plane.npz",
           "tsne.png", "tsne.csv")
_POINTS = flags.DEFINE_integer("points", 21, "Interpolation points on [0, 1].")
_EXTEND = flags.DEFINE_bool("extend", False, "Also interpolate beyond the checkpoints, up to 0.25 on each side, "
                            "with the same spacing (the verdict still covers [0, 1] only).")
_PLANE_POINTS = flags.DEFINE_integer("plane_points", 9, "Grid points per plane axis, evenly spaced over --plane_range "
                                     "(0 and 1, the checkpoints' coordinates, are added where the spacing misses them).")
_PLANE_RANGE = flags.DEFINE_list("plane_range", ["-0.5", "1.5"], "Range of both plane coordinates.")
_SEED_INDEX = flags.DEFINE_integer("seed_index", 0, "Which training seed's actors span the plane.")
_EPISODES = flags.DEFINE_integer("episodes", 5, "Evaluation episodes per point.")
_EVAL_SEED = flags.DEFINE_integer("eval_seed", 0, "Episode e of every point starts from reset seed eval_seed + e "
                                  "(--env=jax: from the reset key fold_in(PRNGKey(eval_seed), e)).")
_ENV = flags.DEFINE_enum("env", "gymnasium", ["gymnasium", "jax"], "Where the episodes run: the dataset's Gymnasium "
                         "environment, or its JAX-native port (every point and episode in one compiled program, for "
                         "accelerators; other start states, and MJX's float32 physics for the locomotion tasks).")
_BATCH = flags.DEFINE_integer("batch_points", 0, "At most this many points per evaluation batch (0: one batch "
                              "per analysis).")
_TSNE = flags.DEFINE_bool("tsne", True, "Write the t-SNE figure of the runs' checkpoints.")
_PERPLEXITY = flags.DEFINE_float("perplexity", None, "t-SNE perplexity (default min(30, (N - 1) / 3)).")


class Job:
    """Points to evaluate with one learner; ``returns`` (points, episodes) once evaluated."""

    def __init__(self, name, learner, stacked, source=None):
        self.name, self.learner, self.stacked = name, learner, stacked
        self.n = ls.stack_size(stacked)
        self.returns = None
        self.source = source or {}  # what was evaluated: workdir and checkpoint steps, kept in the summary


def _label(workdir, config, used):
    base = f"{config['offline']['learner']} -> {config['online']['learner']}"
    label = base if base not in used else f"{base} ({os.path.basename(os.path.normpath(workdir))})"
    used.add(label)
    return label


def _check_args(runs):
    if not runs:
        raise ls.LandscapeInputError("give --workdirs and/or --plane")
    if _PLANE.value and len(_PLANE.value) != 2:
        raise ls.LandscapeInputError(f"--plane takes two workdirs (A,B), got {len(_PLANE.value)}")
    if _PLANE.value and os.path.realpath(_PLANE.value[0]) == os.path.realpath(_PLANE.value[1]):
        raise ls.LandscapeInputError(f"--plane takes two different runs, got {_PLANE.value[0]} twice")
    if _POINTS.value < 2 or _PLANE_POINTS.value < 2 or _EPISODES.value < 1:
        raise ls.LandscapeInputError("--points and --plane_points must be >= 2, --episodes >= 1")
    try:
        lo, hi = (float(v) for v in _PLANE_RANGE.value)
    except ValueError:
        raise ls.LandscapeInputError(f"--plane_range takes two numbers LO,HI, got {_PLANE_RANGE.value}") from None
    if not lo < hi:
        raise ls.LandscapeInputError(f"--plane_range needs LO < HI, got {lo}, {hi}")
    return lo, hi


def _evaluate(jobs, env_fn):
    from smac_jax.runtime import progress_bar

    size = _BATCH.value
    batches = [(job, lo, min(job.n, lo + size) if size > 0 else job.n) for job in jobs
               for lo in range(0, job.n, size if size > 0 else job.n)]
    parts = {id(job): [] for job in jobs}
    for job, lo, hi in progress_bar(iterable=batches, desc="evaluation batches", unit="batch", dynamic_ncols=True):
        chunk = jax.tree.map(lambda x: x[lo:hi], job.stacked)
        evaluate = ls.evaluate_stacked_on_device if _ENV.value == "jax" else ls.evaluate_stacked
        parts[id(job)].append(evaluate(job.learner, chunk, env_fn, _EPISODES.value, _EVAL_SEED.value))
    for job in jobs:
        job.returns = np.concatenate(parts[id(job)])


# ------------------------------------------------------------------------------------------ 1-D
def _interpolation_jobs(runs, ts):
    jobs = []
    for label, wd in runs.items():
        off, on = ls.load_actor(wd, "offline"), ls.load_actor(wd, "online")
        if off.n_seeds == 1 and _EPISODES.value < 2:
            raise ls.LandscapeInputError(f"{wd} has one seed: the verdict needs --episodes >= 2 (its evaluation noise)")
        if not os.path.exists(os.path.join(wd, "summary.json")):
            print(f"[landscape] warning: {wd} has not finished (no summary.json): its fine-tuned actor here is its "
                  f"last online checkpoint, step {on.step}", flush=True)
        learner, (a_off, a_on) = ls.common_actors([off, on])
        per_seed = [ls.interpolate(ls.take(a_off, i), ls.take(a_on, i), ts) for i in range(off.n_seeds)]
        jobs.append(Job(label, learner, ls.concatenate(per_seed),
                        {"workdir": wd, "offline_step": off.step, "online_step": on.step}))
    return jobs


def _write_interpolation(jobs, ts, value, value_name, out):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    summary, rows = {}, []
    for job in jobs:
        rets = job.returns.reshape(-1, len(ts), _EPISODES.value)  # (seeds, T, episodes)
        vals = value(rets)
        n_seeds = rets.shape[0]
        samples = vals.mean(2).T if n_seeds > 1 else vals[0]  # (T, seeds), or (T, episodes) for one seed
        inside = (ts > -1e-9) & (ts < 1 + 1e-9)  # the verdict: between the two checkpoints
        verdict = ls.connectivity(samples[inside])
        t_in = ts[inside]
        mean_all = samples.mean(1)
        se_all = samples.std(1, ddof=1) / np.sqrt(samples.shape[1])
        (line,) = ax.plot(ts, mean_all, marker=".",
                          label=f"{job.name}: drop {verdict.drop:.1f}, "
                                f"{'connected' if verdict.connected else 'not connected'}")
        ax.fill_between(ts, mean_all - se_all, mean_all + se_all, alpha=0.2, color=line.get_color())
        summary[job.name] = {**job.source, "episodes": _EPISODES.value, "eval_seed": _EVAL_SEED.value,
                             "drop": verdict.drop, "threshold": verdict.threshold, "pooled_se": verdict.pooled_se,
                             "connected": bool(verdict.connected), "peak_t": float(t_in[verdict.peak_index]),
                             "dip_t": float(t_in[verdict.dip_index]), "value": value_name,
                             "se_over": "seeds" if n_seeds > 1 else "episodes (one seed)",
                             "t": ts.tolist(), "mean": mean_all.tolist(), "se": se_all.tolist()}
        print(f"[interpolation] {job.name}: {verdict.describe()}")
        for s in range(n_seeds):
            for k, t in enumerate(ts):
                for e in range(_EPISODES.value):
                    rows.append([job.name, f"{t:.6g}", s, e, rets[s, k, e], vals[s, k, e]])
    for t in (0.0, 1.0):
        ax.axvline(t, color="k", lw=0.8, ls=":")
    ax.set_xlabel("t  (0: offline actor, 1: fine-tuned actor)")
    ax.set_ylabel(f"{value_name} (mean ± s.e.)")
    ax.set_title("Linear interpolation offline -> online")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "interpolation.png"), dpi=120)
    plt.close(fig)
    _write_csv(os.path.join(out, "interpolation.csv"), ["run", "t", "seed_index", "episode", "return", "value"], rows)
    with open(os.path.join(out, "interpolation_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


# ------------------------------------------------------------------------------------------ 2-D
def _plane_job(labels, xs, ys):
    (la, wa), (lb, wb) = labels
    snaps = [ls.load_actor(wa, "offline"), ls.load_actor(wa, "online"), ls.load_actor(wb, "online"),
             ls.load_actor(wb, "offline")]
    i = _SEED_INDEX.value
    if not 0 <= i < min(s.n_seeds for s in snaps):
        raise ls.LandscapeInputError(f"--seed_index={i} but the plane runs have {min(s.n_seeds for s in snaps)} seeds")
    learner, actors = ls.common_actors(snaps)
    theta, theta_u, theta_v, b_off = (ls.take(a, i) for a in actors)
    b_xy, b_res = ls.plane_coordinates(theta, theta_u, theta_v, b_off, return_residual=True)
    points = {f"offline ({snaps[0].learner.name})": (0.0, 0.0), f"{la}": (1.0, 0.0), f"{lb}": (0.0, 1.0)}
    if not np.allclose(ls.flatten_params(b_off), ls.flatten_params(theta)):
        print(f"warning: {wb}'s final offline actor differs from {wa}'s (plane coordinates {b_xy.round(3).tolist()}, "
              f"{b_res:.0%} off the plane); the plane's origin is {wa}'s")
        # its projection: the label says how much of it the plane misses, so the marker does not pass for the point
        points[f"offline of {lb} (projected, {b_res:.0%} off the plane)"] = tuple(b_xy)
    return Job("plane", learner, ls.plane(theta, theta_u, theta_v, xs, ys)), points


def _write_plane(job, points, xs, ys, value, value_name, out):
    import matplotlib.pyplot as plt

    rets = job.returns.reshape(len(ys), len(xs), _EPISODES.value)
    grid = value(rets).mean(2)
    np.savez(os.path.join(out, "plane.npz"), xs=xs, ys=ys, returns=rets, value=grid, value_name=value_name,
             point_names=np.array(list(points)), point_xy=np.array(list(points.values())), seed_index=_SEED_INDEX.value)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cs = ax.contourf(xs, ys, grid, levels=20, cmap="viridis")
    ax.contour(xs, ys, grid, levels=cs.levels, colors="k", linewidths=0.3)
    fig.colorbar(cs, ax=ax, label=value_name)
    for (name, (x, y)), marker in zip(points.items(), ("o", "s", "^", "x")):
        ax.plot(x, y, marker, color="w", mec="k", ms=9)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8, color="w",
                    bbox=dict(boxstyle="round", fc="k", alpha=0.5))
    names = list(points)
    ax.set_xlabel(f"x: towards {names[1]}")
    ax.set_ylabel(f"y: towards {names[2]}")
    ax.set_title(f"{value_name} on the plane through three actors (seed index {_SEED_INDEX.value})")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plane.png"), dpi=120)
    plt.close(fig)
    print(f"[plane] {value_name} at the grid points: min {grid.min():.1f}, max {grid.max():.1f}")


# ------------------------------------------------------------------------------------------ t-SNE
def _tsne_job(runs):
    """All saved actors of every run (an offline phase identical to an earlier run's counted once)."""
    entries, snaps, offline_seen, offline_owner = [], [], [], {}
    for label, wd in runs.items():
        traj = ls.load_trajectory(wd)
        off = [s for s in traj if s.phase == "offline"]
        flat = [ls.flatten_params(s.actor) for s in off]
        shared = next((lab for lab, f in offline_seen
                       if len(f) == len(flat) and all(np.array_equal(a, b) for a, b in zip(f, flat))), None)
        if shared is None:
            offline_seen.append((label, flat))
        for s in traj:
            if s.phase == "offline" and shared is not None:
                continue
            entries.append((label, s.phase, s.step))
            snaps.append(s)
        offline_owner[label] = label if shared is None else shared
    try:
        learner, actors = ls.common_actors(snaps)
    except ls.LandscapeInputError as e:  # t-SNE embeds every actor in one parameter space
        raise ls.LandscapeInputError(f"t-SNE (on by default; --notsne leaves it out): {e}") from None
    n_seeds = min(s.n_seeds for s in snaps)
    points = [(e, i) for e in range(len(entries)) for i in range(n_seeds)]
    params = [ls.take(actors[e], i) for e, i in points]
    return Job("t-SNE", learner, ls.stack(params)), (entries, points, params, offline_owner)


def _write_tsne(job, tsne, value, value_name, out):
    import matplotlib.pyplot as plt

    entries, points, params, offline_owner = tsne
    vals = value(job.returns).mean(1)
    emb = ls.tsne_trajectories([params], perplexity=_PERPLEXITY.value)[0]
    rows = [[*entries[e], i, emb[k, 0], emb[k, 1], job.returns[k].mean(), vals[k]] for k, (e, i) in enumerate(points)]
    _write_csv(os.path.join(out, "tsne.csv"), ["run", "phase", "step", "seed_index", "x", "y", "return", "value"], rows)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    # one polyline per (run, seed): its offline checkpoints (own or shared), then its online ones
    offline_of = {}
    for k, (e, i) in enumerate(points):
        run, phase, _ = entries[e]
        if phase == "offline":
            offline_of.setdefault((run, i), []).append(k)
    runs = list(dict.fromkeys(r for r, ph, _ in entries if ph == "online"))
    for r_idx, run in enumerate(runs):
        for i in sorted({i for _, i in points}):
            online = [k for k, (e, j) in enumerate(points) if j == i and entries[e][:2] == (run, "online")]
            path = offline_of.get((offline_owner[run], i), []) + online
            ax.plot(emb[path, 0], emb[path, 1], color=f"C{r_idx}", lw=2.2, alpha=0.85, zorder=2,
                    label=run if i == 0 else None)
            if online:  # where this run's seed ended: a star in the run's colour, named by seed index
                ax.scatter(emb[online[-1], 0], emb[online[-1], 1], marker="*", s=170, color=f"C{r_idx}",
                           edgecolors="k", linewidths=0.6, zorder=4)
                ax.annotate(f"s{i}", (emb[online[-1], 0], emb[online[-1], 1]), textcoords="offset points",
                            xytext=(5, 4), fontsize=7)
    off_k = [k for k, (e, _) in enumerate(points) if entries[e][1] == "offline"]
    on_k = [k for k, (e, _) in enumerate(points) if entries[e][1] == "online"]
    lo, hi = float(vals.min()), float(vals.max())
    sc = None
    for ks, marker, name in ((off_k, "o", "offline checkpoint"), (on_k, "^", "online checkpoint")):
        if ks:
            sc = ax.scatter(emb[ks, 0], emb[ks, 1], c=vals[ks], vmin=lo, vmax=hi, cmap="viridis", marker=marker,
                            edgecolors="k", linewidths=0.3, s=22, label=name, zorder=3)
    fig.colorbar(sc, ax=ax, label=value_name)
    ax.set_title("t-SNE of actor parameters at the saved checkpoints\n(line: run; marker colour: its score; "
                 "star: last online checkpoint of seed s<i>)", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "tsne.png"), dpi=120)
    plt.close(fig)
    print(f"[t-SNE] {len(points)} actors ({len(entries)} checkpoints x {len(points) // len(entries)} seeds)")


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def run(out: str) -> None:
    # a vmap_sweep run among --workdirs stands for its settings
    expanded = dict(ls.expand_runs(_WORKDIRS.value))
    runs_wd = list(dict.fromkeys(list(expanded) + _PLANE.value))
    lo, hi = _check_args(runs_wd)
    configs = {wd: ls.read_run_config(wd) for wd in runs_wd}
    used = set()
    named = {**dict(ls.expand_runs(_PLANE.value)), **expanded}  # --plane's runs are plain (checked above)
    labels = {wd: named.get(wd) or _label(wd, configs[wd], used) for wd in runs_wd}
    env_fn, value, value_name = ls.evaluation_environment(configs, jax_env=_ENV.value == "jax")

    ts = ls.interpolation_grid(_POINTS.value, _EXTEND.value)
    # the checkpoints' own coordinates (0 and 1) are grid points, so their markers sit on evaluated values
    xs = ys = np.union1d(np.linspace(lo, hi, _PLANE_POINTS.value), [c for c in (0.0, 1.0) if lo <= c <= hi])
    jobs = {}
    if expanded:
        jobs["interpolation"] = _interpolation_jobs({labels[wd]: wd for wd in expanded}, ts)
    if _PLANE.value:
        plane_job, plane_points = _plane_job([(labels[wd], wd) for wd in _PLANE.value], xs, ys)
        jobs["plane"] = [plane_job]
    if _TSNE.value:
        tsne_job, tsne = _tsne_job({labels[wd]: wd for wd in runs_wd})
        jobs["tsne"] = [tsne_job]
        ls.tsne_perplexity(len(tsne[1]), _PERPLEXITY.value)  # checked before anything is evaluated

    earlier = earlier_outputs(out, OUTPUTS, _OVERWRITE.value)  # before the evaluations
    _evaluate([j for js in jobs.values() for j in js], env_fn)
    remove_outputs(out, earlier)
    os.makedirs(out, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    if "interpolation" in jobs:
        _write_interpolation(jobs["interpolation"], ts, value, value_name, out)
    if "plane" in jobs:
        _write_plane(plane_job, plane_points, xs, ys, value, value_name, out)
    if "tsne" in jobs:
        _write_tsne(tsne_job, tsne, value, value_name, out)
    print(f"[landscape] figures and data in {out}")


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.ERROR)  # orbax's notes on partial restores
    tune_host_allocator()
    if not _OUT.value:
        fail("--out is required")
    if _EVAL_SEED.value < 0:
        fail(f"--eval_seed must be >= 0 (environments take non-negative reset seeds), got {_EVAL_SEED.value}")
    if _SEED_INDEX.value != 0 and not _PLANE.value:
        fail(f"--seed_index={_SEED_INDEX.value} picks the seed whose actors span a plane: it needs --plane "
             "(the interpolations and t-SNE cover every seed)")
    try:
        run(_OUT.value)
    except ls.LandscapeInputError as e:
        fail(str(e))


if __name__ == "__main__":
    run_cli(main)
