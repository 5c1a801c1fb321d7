"""Does a run's critic over- or underestimate its own policy? (docs/analysis.md, "Critic calibration")

For every saved checkpoint of one phase of a run (or those given with --steps), restores the actor
and the critic of every seed, runs the deterministic policy for --episodes episodes from the same
start states (episode e is reset with seed --eval_seed + e, for every seed and checkpoint), and
compares the critic's value at the start states, min over the ensemble of Q(s0, pi(s0)), with
the discounted return sum_t gamma^t r_t the policy then obtained (in the critic's units: the
dataset's reward scale and bias). A gap that grows while the score stays flat is
overestimation. Runs made since the evaluation logs ``q_start`` carry the same numbers in
metrics.jsonl at every evaluation; this script measures any run, older ones included, with more
episodes.

    python experiments/value_check.py --workdir=runs/hopper/smac-sac --phase=offline --episodes=10

Writes into --out (default <workdir>/value_check): value_check.json and value_check.png (score,
and Q against the return obtained, over the steps; mean over seeds). Bad input: one line
``error: ...``.
"""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from smac_jax.analysis import landscape as ls
from smac_jax.cli import earlier_outputs, fail, remove_outputs, run_cli
from smac_jax.learners.base import TrainState
from smac_jax.runtime import tune_host_allocator
from smac_jax.training.evaluation import in_critic_units, make_act_fn, make_value_fn, run_episodes

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir.")
_PHASE = flags.DEFINE_enum("phase", "offline", list(ls.PHASES), "Whose checkpoints are checked.")
_STEPS = flags.DEFINE_list("steps", [], "Checkpoint steps to check (default: every saved one).")
_EPISODES = flags.DEFINE_integer("episodes", 10, "Episodes per seed and checkpoint, from the same start states.")
_EVAL_SEED = flags.DEFINE_integer("eval_seed", 1_000_000, "Episode e starts from reset seed eval_seed + e.")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: <workdir>/value_check).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the results an earlier check wrote to --out.")
OUTPUTS = ("value_check.json", "value_check.png")


@functools.lru_cache(maxsize=None)
def _compiled(learner):
    """The learner's jitted policy and value function, built once per learner (``load_params``
    returns the same learner object for every checkpoint of a run)."""
    return make_act_fn(learner), make_value_fn(learner)


def check_step(workdir: str, phase: str, step: int, env_fn, value, dataset_cfg: dict, episodes: int,
               eval_seed: int) -> dict:
    """Per seed at one checkpoint: mean score, q_start, discounted return and their difference."""
    step, learner, params = ls.load_params(workdir, phase, step, ("actor", "critic"))
    n_seeds = ls.stack_size(params["actor"])
    states = TrainState(params={k: jax.tree.map(jnp.asarray, v) for k, v in params.items()}, opt_state={},
                        step=jnp.zeros((n_seeds,), jnp.int32))
    act, value_fn = _compiled(learner)
    gamma = float(learner.config.gamma)
    envs = [env_fn() for _ in range(n_seeds * episodes)]
    try:
        eps = run_episodes(envs, lambda o: act(states, o.reshape(n_seeds, episodes, -1)),
                           [eval_seed + i % episodes for i in range(len(envs))], discount=gamma)
    finally:
        for env in envs:
            env.close()
    shape = (n_seeds, episodes)
    q = np.asarray(value_fn(states, jnp.asarray(eps.first_obs.reshape(*shape, -1), jnp.float32)))
    disc = in_critic_units(eps.discounted.reshape(shape), eps.lengths.reshape(shape), gamma,
                           dataset_cfg.get("reward_scale", 1.0), dataset_cfg.get("reward_bias", 0.0))
    return {"step": step, "score": value(eps.returns.reshape(shape)).mean(1).tolist(),
            "q_start": q.mean(1).tolist(), "discounted_return": disc.mean(1).tolist(),
            "q_minus_return": (q - disc).mean(1).tolist(),
            "q_minus_return_se": ((q - disc).std(1, ddof=1) / np.sqrt(episodes)).tolist() if episodes > 1 else None}


def _plot(rows: list[dict], value_name: str, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, [np.mean(r["score"]) for r in rows], marker="o")
    a.set_ylabel(f"{value_name} (mean over seeds)")
    b.plot(steps, [np.mean(r["q_start"]) for r in rows], marker="o", label="Q(s0, pi(s0))")
    b.plot(steps, [np.mean(r["discounted_return"]) for r in rows], marker="o", ls="--", label="discounted return obtained")
    b.set_ylabel("critic units")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # orbax warns about every checkpoint's optional metadata file
    tune_host_allocator()
    if not _WORKDIR.value:
        fail("give --workdir")
    if _EPISODES.value < 1:
        fail(f"--episodes must be >= 1, got {_EPISODES.value}")
    if _EVAL_SEED.value < 0:
        fail(f"--eval_seed must be >= 0 (environments take non-negative reset seeds), got {_EVAL_SEED.value}")
    wd, phase = _WORKDIR.value, _PHASE.value
    out = _OUT.value or os.path.join(wd, "value_check")
    earlier = earlier_outputs(out, OUTPUTS, _OVERWRITE.value)  # before the evaluations
    try:
        config = ls.read_run_config(wd)
        saved = ls.checkpoint_steps(wd, phase)
        try:
            steps = [int(s) for s in _STEPS.value] or saved
        except ValueError:
            fail(f"--steps must be integers, got {_STEPS.value}")
        if not steps:
            raise ls.LandscapeInputError(f"{wd} has no {phase} checkpoint (checkpoints/{phase}/<step>)")
        env_fn, value, value_name = ls.evaluation_environment({wd: config})
        rows = [check_step(wd, phase, s, env_fn, value, config["dataset"], _EPISODES.value, _EVAL_SEED.value)
                for s in steps]
    except ls.LandscapeInputError as e:
        fail(str(e))
    remove_outputs(out, earlier)
    os.makedirs(out, exist_ok=True)
    learner = config[phase]["learner"]
    with open(os.path.join(out, "value_check.json"), "w") as f:
        json.dump({"workdir": wd, "phase": phase, "learner": learner, "episodes": _EPISODES.value,
                   "eval_seed": _EVAL_SEED.value, "metric": value_name, "checkpoints": rows}, f, indent=1)
    _plot(rows, value_name, f"{learner}, {phase} phase: {wd}", os.path.join(out, "value_check.png"))
    print(f"{learner}, {phase} phase, {_EPISODES.value} episodes per seed; per seed: {value_name} | Q(s0, pi(s0)) "
          "| discounted return obtained | difference")
    for r in rows:
        cells = "  ".join(f"{s:6.1f} {q:8.2f} {d:8.2f} {g:+8.2f}" for s, q, d, g in
                          zip(r["score"], r["q_start"], r["discounted_return"], r["q_minus_return"]))
        print(f"  step {r['step']:>7d}: {cells}")


if __name__ == "__main__":
    run_cli(main)
