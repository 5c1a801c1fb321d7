"""The MJX-stepped locomotion tasks (smac_jax.jax_envs.MJX_PORTS) against Gymnasium's own."""
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smac_jax import envs, jax_envs

pytest.importorskip("mujoco.mjx")


def _rollout(env_id: str, n: int, limit: int, seed: int = 0, **kwargs):
    """``n`` steps of the library's Gymnasium environment with random actions (also outside
    [-1, 1]): the MuJoCo state before each step, the action, and what the step returned."""
    env = envs.make_env(env_id, max_episode_steps=limit, **kwargs)
    data = env.unwrapped.data
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    elapsed = 0
    rows = []
    for i in range(n):
        a = rng.uniform(-1.2, 1.2, env.action_space.shape).astype(np.float32)
        before = (data.qpos.copy(), data.qvel.copy(), data.qacc_warmstart.copy(), elapsed)
        obs, rew, term, trunc, _ = env.step(a)
        rows.append((before, a, obs, rew, term, trunc))
        elapsed += 1
        if term or trunc:
            env.reset(seed=seed + i + 1)
            elapsed = 0
    return rows


# Walker2d-v5 takes Hopper's path but for the state-range check; it is compared step by step with
# experiments/check_jax_envs.py (docs/jax_envs_agreement.json), not here: each task's program costs
# the suite 5-25 s of compilation.
@pytest.mark.parametrize("env_id, kwargs", [("Hopper-v5", {"healthy_reward": 0.5}),
                                            ("HalfCheetah-v5", {"forward_reward_weight": 2.0})])
def test_one_step_equals_gymnasium(env_id, kwargs):
    """From the same MuJoCo state and action, one step of the port gives Gymnasium's observation,
    reward and flags (a time limit of 25 steps, so truncations occur too; Hopper falls and
    terminates under random actions)."""
    rows = _rollout(env_id, 80, 25, **kwargs)
    jenv = jax_envs.make_jax_env(gym.make(env_id, max_episode_steps=25, **kwargs).spec)
    assert jenv.max_episode_steps == 25
    step = jax.jit(jenv.step)  # one environment: compiles faster than the vmapped program
    out = [step(jax.random.PRNGKey(i), jax_envs.MjxState(*(jnp.asarray(x, jnp.float32) for x in before[:3]),
                                                        jnp.int32(before[3])), jnp.asarray(a))
           for i, (before, a, *_) in enumerate(rows)]
    obs, final, rew, term, trunc = (np.stack([np.asarray(o[j]) for o in out]) for j in range(1, 6))
    np.testing.assert_allclose(final, np.stack([r[2] for r in rows]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rew, [r[3] for r in rows], rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(term, [r[4] for r in rows])
    np.testing.assert_array_equal(trunc, [r[5] for r in rows])
    done = np.asarray(term) | np.asarray(trunc)
    assert np.asarray(trunc).any() and (env_id == "HalfCheetah-v5" or np.asarray(term).any())
    np.testing.assert_array_equal(np.asarray(obs)[~done], np.asarray(final)[~done])  # the same episode goes on
    assert not np.allclose(np.asarray(obs)[done], np.asarray(final)[done])  # a new episode's first observation


@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5"])
def test_reset_draws_like_gymnasium(env_id):
    """Start states: Gymnasium's initial pose plus its reset noise (uniform; HalfCheetah's velocities
    Gaussian), no solver warm start, and the observation Gymnasium computes from that state."""
    jenv = jax_envs.make_jax_env(env_id)
    genv = gym.make(env_id)
    u = genv.unwrapped
    genv.reset(seed=0)
    scale = u._reset_noise_scale
    states, obs = jax.vmap(jenv.reset)(jax.random.split(jax.random.PRNGKey(0), 2000))
    dq, dv = np.asarray(states.qpos) - u.init_qpos, np.asarray(states.qvel) - u.init_qvel
    assert np.abs(dq).max() <= scale + 1e-7 and np.abs(dq).max() > 0.9 * scale
    if env_id == "HalfCheetah-v5":
        assert abs(dv.std() / scale - 1) < 0.05 and np.abs(dv).max() > 2 * scale
    else:
        assert np.abs(dv).max() <= scale + 1e-7 and abs(dv.std() / (scale / np.sqrt(3)) - 1) < 0.05
    assert not np.asarray(states.qacc_warmstart).any() and not np.asarray(states.steps).any()
    u.set_state(np.asarray(states.qpos[0], np.float64), np.asarray(states.qvel[0], np.float64))
    np.testing.assert_allclose(obs[0], u._get_obs(), rtol=1e-6, atol=1e-6)


def test_collector_state_round_trips_through_a_checkpoint():
    """A device collector over MJX environments: its state_dict (what an online checkpoint holds)
    restores the environments' states and observations exactly, through JSON."""
    import json

    from smac_jax.training.online import DeviceCollector

    env = jax_envs.make_jax_env("Walker2d-v5")
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    a = DeviceCollector(env, keys)
    a.env_state = a.env_state._replace(steps=a.env_state.steps + jnp.arange(3, dtype=jnp.int32),
                                       qacc_warmstart=a.env_state.qvel * 0.5)
    b = DeviceCollector(env, jax.random.split(jax.random.PRNGKey(1), 3))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for x, y in zip(jax.tree.leaves((a.env_state, a.obs)), jax.tree.leaves((b.env_state, b.obs))):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("call, match", [
    (lambda: jax_envs.make_jax_env("Hopper-v5", reward="success"), "reports no success"),
    (lambda: jax_envs.make_jax_env(gym.make("Hopper-v5", render_mode="rgb_array").spec), "render_mode"),
    (lambda: jax_envs.make_jax_env(gym.wrappers.ClipReward(gym.make("Walker2d-v5"), -1, 1).spec), "wrapper"),
    (lambda: jax_envs.make_jax_env("HalfCheetah-v5", env_kwargs={"no_such_argument": 1}), "no_such_argument"),
])
def test_bad_requests_are_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_models_and_arguments_the_port_would_step_differently_are_refused(tmp_path):
    """A model setting MJX ignores (the noslip solver) and a non-numeric constructor argument: one
    line naming them, instead of a port that steps another environment or fails mid-run."""
    import os
    import re

    import gymnasium.envs.mujoco as gm

    xml = open(os.path.join(os.path.dirname(gm.__file__), "assets", "hopper.xml")).read()
    path = tmp_path / "hopper_noslip.xml"
    path.write_text(re.sub(r"<option ", '<option noslip_iterations="10" ', xml, count=1))
    with pytest.raises(ValueError, match="no noslip solver") as e:
        jax_envs.make_jax_env("Hopper-v5", env_kwargs={"xml_file": str(path)})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"ctrl_cost_weight='abc' is not a number") as e:
        jax_envs.make_jax_env("Walker2d-v5", env_kwargs={"ctrl_cost_weight": "abc"})
    assert "\n" not in str(e.value)
