"""Check that a task of configs/o2o.py runs on this install before its dataset is downloaded.

Writes a small Minari dataset of the task's environment (uniform-random actions, the real file
format; per-step ``success`` infos where the environment reports success) into a temporary
Minari store under the task's dataset id, then runs the task's offline -> online job on it at a
tiny budget and prints the summary. Nothing is written outside the temporary directory unless
``--keep`` names a directory for it.

    python experiments/smoke_task.py --task=d4rl-door-binary
    python experiments/smoke_task.py --task=d4rl-kitchen-partial      # needs the kitchen extra
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
import o2o as o2o_configs  # noqa: E402
from smac_jax.cli import fail, run_cli  # noqa: E402
from smac_jax.envs import ensure_registered  # noqa: E402
from smac_jax.errors import DatasetError  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402

_TASK = flags.DEFINE_string("task", None, "Task in configs/o2o.py.", required=True)
_OFF = flags.DEFINE_string("offline", "sac", "Offline learner.")
_ON = flags.DEFINE_string("online", "sac", "Online learner.")
_EPISODES = flags.DEFINE_integer("episodes", 5, "Random episodes in the dataset.")
_STEPS = flags.DEFINE_integer("episode_steps", 20, "Time limit of the dataset's (and the runs') episodes.")
_KEEP = flags.DEFINE_string("keep", None, "Directory to keep the dataset store and the run in (default: removed).")


def _environment(env_id: str) -> gym.Env:
    try:
        ensure_registered(env_id)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    try:
        return gym.make(env_id, max_episode_steps=_STEPS.value)
    except Exception as e:  # noqa: BLE001  (the environment's own failure, e.g. an incompatible MuJoCo)
        hint = ""
        if env_id.startswith("FrankaKitchen"):
            import mujoco

            hint = f"; Gymnasium-Robotics' kitchen needs MuJoCo < 3.12 (installed {mujoco.__version__}): " \
                   "pip install 'smac_jax[kitchen]'"
        raise DatasetError(f"{env_id} cannot be built on this install ({type(e).__name__}: {str(e)[:200]}){hint}") from None


def _write_dataset(env: gym.Env, dataset_id: str) -> None:
    from smac_jax.training.dataset_factory import random_episodes_dataset

    env.reset(seed=0)
    reports = "success" in env.step(env.action_space.sample())[4]
    random_episodes_dataset(env, dataset_id, _EPISODES.value, record_success=reports,
                            algorithm_name="uniform random (smoke_task.py)", ref_min_score=0.0,
                            ref_max_score=1.0, description="smoke-test dataset")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tune_host_allocator()
    if _TASK.value not in o2o_configs.TASKS:
        fail(f"--task: unknown task {_TASK.value!r}; known: {', '.join(o2o_configs.TASKS)}")
    if _EPISODES.value < 1 or _STEPS.value < 2:
        fail(f"--episodes must be >= 1 and --episode_steps >= 2, got {_EPISODES.value} / {_STEPS.value}")
    if _EPISODES.value * _STEPS.value < 16:  # the runs' minibatches are 16 transitions of this dataset
        fail(f"--episodes x --episode_steps must be >= 16 (the runs' batch size), got {_EPISODES.value} x {_STEPS.value}")
    root = _KEEP.value or tempfile.mkdtemp(prefix="smac_jax_smoke_")
    os.makedirs(root, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = os.path.join(root, "minari")
    try:
        c = o2o_configs.get_config(f"{_TASK.value},{_OFF.value},{_ON.value}")
        env = _environment(c.dataset.generate_env)
        _write_dataset(env, c.dataset.id)
        c.n_seeds, c.eval.episodes = 2, 1
        c.offline.update(steps=100, scan_steps=50, eval_every=50, ckpt_every=100)
        c.online.update(steps=2 * _STEPS.value, eval_every=_STEPS.value, ckpt_every=_STEPS.value,
                        learning_starts=_STEPS.value // 2)
        c.online.replay.capacity = 1_000
        for agent in (c.offline.agent, c.online.agent):
            agent.hidden_dims, agent.batch_size = (32, 32), 16
            if "score_config" in agent:
                agent.score_config.update(steps=50, hidden_dim=32, batch_size=16)
        from smac_jax.data.dataset import load_dataset_from_config
        from smac_jax.training.pipeline import run

        d = load_dataset_from_config(c.dataset)
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            summary = run(c, os.path.join(root, "run"), progress=False)
        with open(os.path.join(root, "run", "metrics.jsonl")) as f:
            last = [json.loads(line) for line in f][-1]
        print(f"{_TASK.value}: {c.dataset.generate_env}, dataset {c.dataset.id} (reward {c.dataset.reward}, "
              f"x{c.dataset.reward_scale:g} {c.dataset.reward_bias:+g}), {d.transitions.obs.shape[0]} random "
              f"transitions, observations {d.obs_dim}, actions {d.action_dim}; {c.offline.learner} -> "
              f"{c.online.learner} ran in {time.time() - t0:.1f} s; metric {summary['metric']}, "
              f"final online {np.round(summary.get('online_final', []), 2).tolist()}; last row: "
              + ", ".join(f"{k}={last[k]}" for k in ("eval_return", "eval_score", "eval_success", "train_episodes")
                          if k in last))
    finally:
        if not _KEEP.value:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run_cli(main)
