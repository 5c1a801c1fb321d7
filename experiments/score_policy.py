"""How good is SMAC's score model on its dataset? Sample actions from it and play them.

The return-conditioned diffusion model that SMAC's critic is regularised towards is also a policy:
draw a ~ p(a | s, w) with the reverse DDPM chain at every step. Its normalised score at w = 1 is
what the score-matching term pulls towards (if it is no better than the data, the term cannot lift
SMAC above the data); the score at lower w shows whether the return conditioning does anything.

    # fit (or load) the task's score model and evaluate it at several w:
    python experiments/score_policy.py --task=pendulum-medium --out=runs/score-policy
    # its fit against training steps and width (one model per pair, stored under --out):
    python experiments/score_policy.py --task=pendulum-medium --steps=10000,50000 --widths=128,256 \
        --out=runs/score-policy

Writes ``<out>/score_policy.json`` (per model: fit steps, width, final DDPM loss, fit time, and per w
the normalised score of every episode and their mean) and ``<out>/score_policy.png``. Models are
stored in ``<out>/models/w<width>_s<steps>`` and reused when the script runs again.
"""
from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np
from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import o2o as o2o_configs  # noqa: E402

from smac_jax.cli import fail, run_cli  # noqa: E402
from smac_jax.data.dataset import load_dataset_from_config  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402
from smac_jax.score import model as sm  # noqa: E402
from smac_jax.score.train import fit_or_load_score_model  # noqa: E402

_TASK = flags.DEFINE_string("task", "pendulum-medium", "Task in configs/o2o.py (its dataset and score config).")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_STEPS = flags.DEFINE_list("steps", [], "Score-model training steps to compare (default: the task's).")
_WIDTHS = flags.DEFINE_list("widths", [], "Score-network widths to compare (default: the task's).")
_WS = flags.DEFINE_list("ws", ["0", "0.5", "1"], "Return conditionings w at which to sample.")
_EPISODES = flags.DEFINE_integer("episodes", 10, "Evaluation episodes per (model, w).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the fits, the samples and the episodes' resets.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def play(params, score_config, dataset, w: float, episodes: int, seed: int) -> np.ndarray:
    """Normalised score of ``episodes`` episodes with a ~ p(a | s, w) sampled at every step (a
    binary task's: 100 for an episode in which some step reported ``info["success"]``, else 0)."""
    envs = dataset.make_vector_env(episodes, seeds=seed)
    act = jax.jit(lambda o, k: sm.sample(params, o, w, k, score_config))
    obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
    returns, active = np.zeros(episodes), np.ones(episodes, bool)
    succeeded = np.zeros(episodes, bool)
    key = jax.random.PRNGKey(seed)
    while active.any():
        key, k = jax.random.split(key)
        obs, rew, term, trunc, info = envs.step(np.asarray(act(np.asarray(obs, np.float32), k)))
        returns += rew * active
        if "success" in info:
            succeeded |= np.asarray(info["success"], bool) & active
        active &= ~(term | trunc)
    envs.close()
    if dataset.reward == "success":  # the dataset's scores count an episode with a success as 1
        return np.asarray(dataset.normalized_score(succeeded.astype(np.float64)))
    return np.asarray(dataset.normalized_score(returns))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tune_host_allocator()
    if _TASK.value not in o2o_configs.TASKS:
        fail(f"--task: unknown task {_TASK.value!r}; known: {', '.join(o2o_configs.TASKS)}")
    if _EPISODES.value < 1:
        fail(f"--episodes must be >= 1, got {_EPISODES.value}")
    cfg = o2o_configs.get_config(f"{_TASK.value},smac,sac")
    base = cfg.offline.agent.score_config
    try:
        steps = [int(s) for s in _STEPS.value] or [int(base.steps)]
        widths = [int(s) for s in _WIDTHS.value] or [int(base.hidden_dim)]
        ws = [float(w) for w in _WS.value]
    except ValueError as e:
        fail(f"--steps, --widths and --ws take comma-separated numbers ({e})")
    if any(s < 1 for s in steps) or any(d < 1 for d in widths) or any(not 0.0 <= w <= 1.0 for w in ws):
        fail("--steps and --widths must be >= 1 and every --ws value in [0, 1]")

    dc = cfg.dataset
    dataset = load_dataset_from_config(dc)
    data_scores = np.asarray(dataset.normalized_score(dataset.episode_returns()))
    os.makedirs(_OUT.value, exist_ok=True)
    results = dict(task=_TASK.value, dataset=dc.id, episodes=_EPISODES.value, seed=_SEED.value,
                   data_score_mean=float(data_scores.mean()), data_score_max=float(data_scores.max()), models=[])
    for width in widths:
        for n in steps:
            score_cfg = base.copy_and_resolve_references()
            score_cfg.hidden_dim, score_cfg.steps = width, n
            path = os.path.join(_OUT.value, "models", f"w{width}_s{n}")
            t0 = time.time()
            params, score_cfg = fit_or_load_score_model(path, dataset, score_cfg, seed=_SEED.value,
                                                        progress=_PROGRESS.value)
            fit_s = time.time() - t0
            with open(os.path.join(path, "score_model.json")) as f:
                meta = json.load(f).get("meta", {})
            row = dict(width=width, steps=n, final_loss=meta.get("final_loss"), fit_or_load_s=fit_s, by_w={})
            for w in ws:
                s = play(params, score_cfg, dataset, w, _EPISODES.value, _SEED.value)
                row["by_w"][str(w)] = dict(scores=s.tolist(), mean=float(s.mean()))
                print(f"[score_policy] width {width}, {n} steps, w={w}: score {s.mean():.1f} "
                      f"(episodes {', '.join(f'{x:.1f}' for x in s)})")
            results["models"].append(row)
    out = os.path.join(_OUT.value, "score_policy.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    _plot(results, os.path.join(_OUT.value, "score_policy.png"))
    print(f"[score_policy] data episodes score {results['data_score_mean']:.1f} on average "
          f"(best {results['data_score_max']:.1f}); wrote {out}")


def _plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in results["models"]:
        ws = sorted(float(w) for w in row["by_w"])
        means = [row["by_w"][str(w)]["mean"] for w in ws]
        sems = [np.std(row["by_w"][str(w)]["scores"]) / np.sqrt(len(row["by_w"][str(w)]["scores"])) for w in ws]
        ax.errorbar(ws, means, yerr=sems, marker="o", capsize=3, label=f"width {row['width']}, {row['steps']} steps")
    ax.axhline(results["data_score_mean"], color="k", ls="--", lw=1, label="dataset episodes (mean)")
    ax.set_xlabel("return conditioning w")
    ax.set_ylabel("normalised score")
    ax.set_title(f"score model as a policy: {results['task']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run_cli(main)
