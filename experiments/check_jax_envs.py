"""How closely the JAX-native ports (smac_jax.jax_envs) step like Gymnasium's own environments.

For each environment: a rollout of the library's Gymnasium environment with uniform-random actions
in [-1.2, 1.2] (outside the action bounds too), recording the simulator state before every step;
then the port's ``step`` from each recorded state with the same action, all in one vmapped call.
Prints the largest and median absolute differences of the observations and rewards, and whether
every termination and truncation flag agrees. Optionally writes the numbers as JSON.

    python experiments/check_jax_envs.py --envs=Hopper-v5,Walker2d-v5,HalfCheetah-v5 --steps=200
"""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from smac_jax import envs, jax_envs
from smac_jax.cli import fail, run_cli

_ENVS = flags.DEFINE_list("envs", list(jax_envs.SUPPORTED), "Environments with a JAX-native port.")
_STEPS = flags.DEFINE_integer("steps", 200, "Steps of the Gymnasium rollout (every one compared).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the rollout's resets and actions.")
_JSON = flags.DEFINE_string("json", None, "Write the results to this JSON file.")


def _rollout(env_id: str, n: int, seed: int):
    """The Gymnasium rollout: (state before, action, obs, reward, terminated, truncated) per step."""
    env = envs.make_env(env_id)
    u, limit = env.unwrapped, env.spec.max_episode_steps
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    elapsed, rows = 0, []
    for i in range(n):
        a = rng.uniform(-1.2, 1.2, env.action_space.shape).astype(np.float32)
        if env_id in jax_envs.MJX_PORTS:
            d = u.data
            before = (d.qpos.copy(), d.qvel.copy(), d.qacc_warmstart.copy(), elapsed)
        else:  # Pendulum: (theta, theta_dot), steps taken
            before = (*u.state.copy(), elapsed)
        obs, rew, term, trunc, _ = env.step(a)
        rows.append((before, a, obs, float(rew), bool(term), bool(trunc)))
        elapsed += 1
        if term or trunc:
            env.reset(seed=seed + i + 1)
            elapsed = 0
    env.close()
    return rows, limit


def _states(env_id: str, jenv, rows):
    """The recorded states as the port's state pytree, with a leading step axis."""
    if env_id in jax_envs.MJX_PORTS:
        return jax_envs.MjxState(*(jnp.asarray(np.stack([r[0][i] for r in rows]), jnp.float32) for i in range(3)),
                                 jnp.asarray([r[0][3] for r in rows], jnp.int32))
    template, _ = jenv.reset(jax.random.PRNGKey(0))
    f32 = lambda i: jnp.asarray([r[0][i] for r in rows], jnp.float32)  # noqa: E731
    return jax.vmap(lambda th, thd, t: template.replace(theta=th, theta_dot=thd, time=t))(
        f32(0), f32(1), jnp.asarray([r[0][2] for r in rows], jnp.int32))


def check(env_id: str, n: int, seed: int) -> dict:
    rows, limit = _rollout(env_id, n, seed)
    jenv = jax_envs.make_jax_env(env_id)
    t0 = time.perf_counter()
    out = jax.jit(jax.vmap(jenv.step))(jax.random.split(jax.random.PRNGKey(seed), len(rows)),
                                       _states(env_id, jenv, rows), jnp.asarray(np.stack([r[1] for r in rows])))
    _, _, final, rew, term, trunc = jax.device_get(out)
    seconds = time.perf_counter() - t0
    d_obs = np.abs(final - np.stack([r[2] for r in rows]))
    d_rew = np.abs(rew - np.array([r[3] for r in rows]))
    flags_equal = bool((term == [r[4] for r in rows]).all() and (trunc == [r[5] for r in rows]).all())
    return {"env": env_id, "steps": len(rows), "time_limit": limit, "obs_abs_diff_max": float(d_obs.max()),
            "obs_abs_diff_median": float(np.median(d_obs)), "reward_abs_diff_max": float(d_rew.max()),
            "reward_abs_diff_median": float(np.median(d_rew)), "flags_equal": flags_equal,
            "terminations": int(sum(r[4] for r in rows)), "compile_and_step_s": seconds}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    unknown = [e for e in _ENVS.value if e not in jax_envs.SUPPORTED]
    if unknown:
        fail(f"--envs: {unknown} have no JAX-native port (those with one: {', '.join(jax_envs.SUPPORTED)})")
    if _STEPS.value < 1:
        fail(f"--steps must be >= 1, got {_STEPS.value}")
    results = []
    for env_id in _ENVS.value:
        try:
            jax_envs.check_port(env_id)
        except ValueError as e:
            fail(f"{env_id}: {e}")
        r = check(env_id, _STEPS.value, _SEED.value)
        results.append(r)
        print(f"{env_id}: {r['steps']} steps ({r['terminations']} terminations); |obs diff| max "
              f"{r['obs_abs_diff_max']:.2e} median {r['obs_abs_diff_median']:.2e}; |reward diff| max "
              f"{r['reward_abs_diff_max']:.2e} median {r['reward_abs_diff_median']:.2e}; flags equal: "
              f"{r['flags_equal']}", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"jax": jax.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
