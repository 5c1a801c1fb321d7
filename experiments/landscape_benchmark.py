"""Wall time of evaluating a landscape plane as one batch against point by point.

    python experiments/landscape_benchmark.py --env=Hopper-v5 --grid=11 --episodes=5 --hidden=128,128

Every path calls ``smac_jax.analysis.landscape.evaluate_stacked`` on a plane through three randomly
initialised actors, with the same episode seeds:

* ``batched``: all points in one call, environments stepped by ``smac_jax.vector_mujoco`` where
  the task supports it, its physics in ``--threads`` threads (the default: one per 16
  environments up to the CPU count);
* ``batched_1thread``: the same with the physics in the calling thread only;
* ``batched_gym``: all points in one call, every environment stepped by ``env.step``;
* ``sequential``: one point per call (its episodes still in lockstep), ``env.step``: evaluating
  the points one after another without this library's batching;
* ``device`` (with ``--device``, where the environment has a JAX-native port): all points in one
  compiled program on the port (``evaluate_stacked_on_device``); its first call (compile included)
  and a second call are timed; its returns are other draws (start states, float32 physics), so
  only their mean is reported.

Compilation is done before timing (one warm-up call of each batch shape, one step long). Every
timing includes building the environments (one per point and episode, inside evaluate_stacked);
``env_construction_s`` is that share, measured on its own. The returns of the paths are checked
to be identical. Where the task is vectorised, the one-thread batched run also sums the time spent
in the physics (``physics_1thread_s``: ``mj_step`` over the frame skip and ``mj_rnePostConstraint``,
every environment, every step); ``physics_bound_ratio`` is the point-by-point time over that
physics divided by the threads: the ratio the batched path would reach if nothing but the
physics cost time and it divided perfectly over the threads. Prints and optionally appends a JSON
line.
"""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import flags

from smac_jax.cli import fail, run_cli
from smac_jax.analysis import landscape as ls
from smac_jax.envs import make_env
from smac_jax.learners import make_learner
from smac_jax.vector_mujoco import LocomotionBatch, locomotion_batch

_ENV = flags.DEFINE_string("env", "Hopper-v5", "Gymnasium environment id.")
_GRID = flags.DEFINE_integer("grid", 11, "Points per plane axis (grid x grid points).")
_EPISODES = flags.DEFINE_integer("episodes", 5, "Episodes per point.")
_HIDDEN = flags.DEFINE_list("hidden", ["128", "128"], "Actor hidden sizes.")
_LEARNER = flags.DEFINE_string("learner", "sac", "Learner whose actor and act() are evaluated.")
_NO_TERMINATION = flags.DEFINE_bool("no_termination", False, "MuJoCo locomotion: terminate_when_unhealthy=False, "
                                     "so every episode runs to the time limit (as a trained policy's would).")
_THREADS = flags.DEFINE_integer("threads", None, "Physics threads of the batched path (default: one per 16 "
                                "environments up to the CPU count).")
_DEVICE = flags.DEFINE_bool("device", False, "Also time the plane on the environment's JAX-native port, every point "
                            "and episode in one compiled program (smac_jax.jax_envs).")
_OUT = flags.DEFINE_string("out", None, "Append the result as a JSON line to this file.")


class PhysicsTimer:
    """Within the ``with`` block, sums the wall time of every ``LocomotionBatch._physics`` call
    (meaningful with one physics thread: the calls then run one after another)."""

    def __enter__(self):
        self.seconds, self._orig = 0.0, LocomotionBatch._physics
        orig, timer = self._orig, self

        def timed_physics(batch, idx):
            t0 = time.perf_counter()
            orig(batch, idx)
            timer.seconds += time.perf_counter() - t0

        LocomotionBatch._physics = timed_physics
        return self

    def __exit__(self, *exc):
        LocomotionBatch._physics = self._orig


def main(argv):
    del argv
    if _DEVICE.value:
        from smac_jax.jax_envs import check_port

        try:
            check_port(_ENV.value)
        except ValueError as e:
            fail(f"--device: {e}")
    kwargs = {"terminate_when_unhealthy": False} if _NO_TERMINATION.value else {}
    env_fn = lambda: make_env(_ENV.value, **kwargs)  # noqa: E731
    probe = env_fn()
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    learner = make_learner(_LEARNER.value, obs_dim, act_dim, {"hidden_dims": tuple(int(h) for h in _HIDDEN.value)})
    theta, theta_u, theta_v = (learner.init(jax.random.PRNGKey(i)).params["actor"] for i in range(3))
    axis = np.linspace(-0.5, 1.5, _GRID.value)
    grid = ls.plane(theta, theta_u, theta_v, axis, axis)
    n, e = ls.stack_size(grid), _EPISODES.value
    single = [ls.stack([ls.take(grid, i)]) for i in range(n)]

    # compile both batch shapes (one environment step each)
    ls.evaluate_stacked(learner, grid, env_fn, e, 0, max_steps=1)
    ls.evaluate_stacked(learner, single[0], env_fn, e, 0, max_steps=1)

    t0 = time.perf_counter()
    envs = [env_fn() for _ in range(n * e)]
    t_build = time.perf_counter() - t0
    probe_batch = locomotion_batch(envs, _THREADS.value)
    vectorizable = probe_batch is not None
    threads = probe_batch.threads if vectorizable else 1
    if vectorizable:
        probe_batch.close()
    for env in envs:
        env.close()

    t0 = time.perf_counter()
    batched, lengths = ls.evaluate_stacked(learner, grid, env_fn, e, 0, return_lengths=True, threads=threads)
    t_batched = time.perf_counter() - t0
    with PhysicsTimer() as physics:
        t0 = time.perf_counter()
        batched_1 = ls.evaluate_stacked(learner, grid, env_fn, e, 0, threads=1)
        t_batched_1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched_gym = ls.evaluate_stacked(learner, grid, env_fn, e, 0, vectorized=False)
    t_batched_gym = time.perf_counter() - t0
    t0 = time.perf_counter()
    sequential = np.concatenate([ls.evaluate_stacked(learner, s, env_fn, e, 0, vectorized=False) for s in single])
    t_sequential = time.perf_counter() - t0

    result = {
        "env": _ENV.value, "no_termination": _NO_TERMINATION.value, "points": n, "episodes": e, "hidden": [int(h) for h in _HIDDEN.value],
        "vectorized_env": vectorizable, "threads": threads, "cpu_count": os.cpu_count(),
        "batched_s": round(t_batched, 2), "batched_1thread_s": round(t_batched_1, 2),
        "batched_gym_s": round(t_batched_gym, 2),
        "sequential_s": round(t_sequential, 2), "ratio": round(t_sequential / t_batched, 2),
        "ratio_1thread": round(t_sequential / t_batched_1, 2),
        "ratio_batched_gym": round(t_sequential / t_batched_gym, 2), "env_construction_s": round(t_build, 2),
        "mean_episode_steps": float(lengths.mean()), "max_episode_steps": int(lengths.max()),
        "identical_returns": bool(np.array_equal(batched, sequential) and np.array_equal(batched, batched_gym)
                                  and np.array_equal(batched, batched_1)), "mean_return": float(batched.mean()),
    }
    if _DEVICE.value:
        from smac_jax.jax_envs import make_jax_env

        jenv = make_jax_env(_ENV.value, env_kwargs=kwargs)
        t0 = time.perf_counter()
        ls.evaluate_stacked_on_device(learner, grid, jenv, e, 0)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        on_device = ls.evaluate_stacked_on_device(learner, grid, jenv, e, 0)
        t_device = time.perf_counter() - t0
        result.update({"device_first_call_s": round(t_first, 2), "device_s": round(t_device, 2),
                       "ratio_device": round(t_sequential / t_device, 2), "device_mean_return": float(on_device.mean())})
    if vectorizable:
        result["physics_1thread_s"] = round(physics.seconds, 2)
        result["physics_bound_ratio"] = round(t_sequential / (physics.seconds / threads), 2)
    print(json.dumps(result))
    if _OUT.value:
        with open(_OUT.value, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    run_cli(main)
