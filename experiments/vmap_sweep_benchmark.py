"""Settings in one program against the same settings run one after another.

Runs one offline -> online job with ``vmap_sweep`` (every setting x ``--n_seeds`` seeds as lanes of
one program) and each setting as a plain run of its own (the config ``settings/<k>/config.json``
holds), one arm after the other in one process, and reports each arm's wall time (compilation included: a plain
run compiles its own programs, since its values are constants in them), their ratio, and how far
each setting's evaluations in the swept run are from its plain run's.

    python experiments/vmap_sweep_benchmark.py --json=docs/benchmark_vmap_sweep.json

The data is a random-action dataset of the task's environment, ``--episodes`` episodes written to a
temporary Minari store, so nothing is downloaded or generated at length.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
import o2o as o2o_configs  # noqa: E402
from smac_jax.cli import run_cli  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402

_CONFIG = flags.DEFINE_string("config", "pendulum,td3bc,td3", "configs/o2o.py argument: TASK,OFFLINE,ONLINE.")
_SWEEP = flags.DEFINE_string("sweep", "offline.agent.alpha=1,2.5,5,10", "The vmap_sweep to time.")
_N_SEEDS = flags.DEFINE_integer("n_seeds", 3, "Seeds per setting.")
_OFFLINE = flags.DEFINE_integer("offline_steps", 2_000, "Offline updates.")
_ONLINE = flags.DEFINE_integer("online_steps", 2_000, "Online environment steps.")
_EPISODES = flags.DEFINE_integer("episodes", 100, "Episodes in the random-action dataset.")
_HIDDEN = flags.DEFINE_integer("hidden", 128, "Width of the two hidden layers of every network.")
_PLAIN_FIRST = flags.DEFINE_bool("plain_first", False, "Run the settings one by one before the swept run "
                                  "(the first arm of a process also pays JAX's start-up).")
_JSON = flags.DEFINE_string("json", None, "Write the results here.")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _evals(path: str) -> np.ndarray:
    with open(path) as f:
        return np.array([json.loads(line)["eval_return"] for line in f if line.strip()])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tune_host_allocator()
    import gymnasium as gym
    import jax

    from smac_jax.training import pipeline, vmap_sweep
    from smac_jax.training.dataset_factory import random_episodes_dataset

    with tempfile.TemporaryDirectory(prefix="smac_jax_vmap_sweep_") as tmp:
        os.environ["MINARI_DATASETS_PATH"] = os.path.join(tmp, "minari")
        c = o2o_configs.get_config(_CONFIG.value)
        env = gym.make(c.dataset.generate_env)
        random_episodes_dataset(env, c.dataset.id, _EPISODES.value, algorithm_name="uniform random",
                                description="vmap_sweep benchmark data")
        c.dataset.generate = False
        c.n_seeds = _N_SEEDS.value
        c.offline.update(steps=_OFFLINE.value, scan_steps=min(1_000, _OFFLINE.value),
                         eval_every=_OFFLINE.value, ckpt_every=_OFFLINE.value)
        c.online.update(steps=_ONLINE.value, eval_every=_ONLINE.value // 2, ckpt_every=_ONLINE.value,
                        learning_starts=min(500, _ONLINE.value // 2))
        for agent in (c.offline.agent, c.online.agent):
            agent.hidden_dims = (_HIDDEN.value, _HIDDEN.value)
        c.vmap_sweep = _SWEEP.value
        sweep = vmap_sweep.parse(c)
        print(f"{sweep.n_settings} settings x {c.n_seeds} seeds on {c.dataset.generate_env}, "
              f"{c.offline.learner} -> {c.online.learner}, {_OFFLINE.value} + {_ONLINE.value} steps")

        def swept_arm():
            t0 = time.perf_counter()
            _quiet(pipeline.run, c, os.path.join(tmp, "swept"), progress=False)
            print(f"swept: {time.perf_counter() - t0:.1f} s")
            return time.perf_counter() - t0

        def plain_arm():
            seconds = []
            for k in range(sweep.n_settings):
                t0 = time.perf_counter()
                _quiet(pipeline.run, sweep.setting_config(c, k), os.path.join(tmp, f"plain{k}"), progress=False)
                seconds.append(time.perf_counter() - t0)
                print(f"plain setting {k} ({sweep.label(k)}): {seconds[-1]:.1f} s")
            return seconds

        if _PLAIN_FIRST.value:
            per_setting = plain_arm()
            swept_s = swept_arm()
        else:
            swept_s = swept_arm()
            per_setting = plain_arm()
        diffs = []
        for k in range(sweep.n_settings):
            a = _evals(os.path.join(tmp, "swept", "settings", str(k), "metrics.jsonl"))
            b = _evals(os.path.join(tmp, f"plain{k}", "metrics.jsonl"))
            diffs.append(float(np.max(np.abs(a - b))))
        print(f"largest evaluation-return difference between a setting's swept and plain runs: {max(diffs):.2e}")
        plain_s = float(np.sum(per_setting))
        print(f"one after another: {plain_s:.1f} s; swept / one after another: {swept_s / plain_s:.2f}")
        result = {
            "date": time.strftime("%Y-%m-%d"), "device": str(jax.devices()[0].device_kind),
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "jax": jax.__version__,
            "config": _CONFIG.value, "vmap_sweep": _SWEEP.value, "n_settings": sweep.n_settings,
            "n_seeds": c.n_seeds, "offline_steps": _OFFLINE.value, "online_steps": _ONLINE.value,
            "hidden": _HIDDEN.value, "episodes": _EPISODES.value,
            "order": "plain first" if _PLAIN_FIRST.value else "swept first", "swept_seconds": swept_s, "plain_seconds_per_setting": per_setting, "plain_seconds": plain_s,
            "swept_over_plain": swept_s / plain_s, "max_abs_eval_return_diff_per_setting": diffs,
        }
        if _JSON.value:
            with open(_JSON.value, "w") as f:
                json.dump(result, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
