"""JAX-native environments (smac_jax.jax_envs) against Gymnasium's, and the online phase on them."""
import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smac_jax import envs, jax_envs

gymnax = pytest.importorskip("gymnax")


def _pendulum_state(template, theta, theta_dot, t):
    return template.replace(theta=jnp.float32(theta), theta_dot=jnp.float32(theta_dot), time=jnp.int32(t))


@pytest.mark.parametrize("kwargs", [{}, {"g": 9.81}])
def test_pendulum_steps_like_gymnasium(kwargs):
    """From the same state and action, one step of the JAX port gives Gymnasium's observation,
    reward and flags (actions in [-1, 1] rescaled to the torque bounds in both)."""
    genv = envs.make_env("Pendulum-v1", **kwargs)
    jenv = jax_envs.make_jax_env(gym.make("Pendulum-v1", **kwargs).spec)
    template, _ = jenv.reset(jax.random.PRNGKey(0))
    step = jax.jit(jenv.step)
    rng = np.random.default_rng(0)
    genv.reset(seed=0)
    for i in range(50):
        th, thd = rng.uniform(-np.pi, np.pi), rng.uniform(-8, 8)
        a = rng.uniform(-1.2, 1.2, size=1).astype(np.float32)  # also outside [-1, 1]: both clip the torque
        genv.unwrapped.state = np.array([th, thd])
        obs, rew, term, trunc, _ = genv.step(a)
        _, jobs, final, jrew, jterm, jtrunc = step(jax.random.PRNGKey(i), _pendulum_state(template, th, thd, 0), a)
        np.testing.assert_allclose(final, obs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(jobs, obs, rtol=1e-5, atol=1e-5)  # no episode ended: the same observation
        np.testing.assert_allclose(jrew, rew, rtol=1e-5, atol=1e-5)
        assert (bool(jterm), bool(jtrunc)) == (term, trunc) == (False, False)


def test_pendulum_time_limit_truncates_and_resets_in_the_same_step():
    jenv = jax_envs.make_jax_env(gym.make("Pendulum-v1", max_episode_steps=7).spec)
    assert jenv.max_episode_steps == 7
    state, _ = jenv.reset(jax.random.PRNGKey(0))
    flags = []
    for i in range(7):
        state, obs, final, _, term, trunc = jenv.step(jax.random.PRNGKey(i + 1), state, jnp.zeros(1))
        flags.append((bool(term), bool(trunc)))
    assert flags == [(False, False)] * 6 + [(False, True)]
    assert not np.allclose(obs, final)  # the observation to act on is the new episode's first
    assert int(state.time) == 0 and abs(float(obs[2])) <= 1.0  # a reset draws theta_dot in [-1, 1]


def test_observation_standardisation_matches_make_env():
    mean, std = np.array([0.1, -0.2, 0.3], np.float32), np.array([2.0, 0.5, 4.0], np.float32)
    jenv = jax_envs.make_jax_env("Pendulum-v1", obs_mean=mean, obs_std=std)
    genv = envs.make_env("Pendulum-v1", obs_mean=mean, obs_std=std)
    template, _ = jenv.reset(jax.random.PRNGKey(0))
    genv.reset(seed=0)
    genv.unwrapped.state = np.array([0.4, -1.5])
    obs, *_ = genv.step(np.array([0.3], np.float32))
    _, _, final, *_ = jenv.step(jax.random.PRNGKey(0), _pendulum_state(template, 0.4, -1.5, 0), jnp.array([0.3]))
    np.testing.assert_allclose(final, obs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: jax_envs.make_jax_env("Ant-v5"), "no JAX-native port"),  # MJX orients its contacts' friction differently
    (lambda: jax_envs.make_jax_env("MountainCarContinuous-v0"), "no JAX-native port"),  # gymnax's port differs
    (lambda: jax_envs.make_jax_env("Pendulum-v1", reward="success"), "reports no success"),
    (lambda: jax_envs.make_jax_env(gym.make("Pendulum-v1", render_mode="rgb_array").spec), "render_mode"),
    (lambda: jax_envs.make_jax_env("Pendulum-v1", obs_mean=np.zeros(3)), "together"),
    (lambda: jax_envs.make_jax_env("Pendulum-v1", env_kwargs={"g": "x"}), r"g='x' must be a finite number"),
])
def test_bad_requests_are_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_online_phase_on_the_device(make_tiny_config, tmp_path):
    """online.env='jax': the online phase runs with the JAX-native Pendulum (online updates on the
    transitions it collects, evaluations on Gymnasium's Pendulum). That the same seed gives the same
    numbers is checked by tests/test_faults.py's kill-and-resume runs against an uninterrupted one."""
    from smac_jax.training import pipeline

    config = make_tiny_config("td3bc", "sac", **{"online.env": "jax", "offline.steps": 100})
    pipeline.run(config, str(tmp_path / "a"), progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
    online = [r for r in rows if r["phase"] == "online"]
    assert sorted({r["step"] for r in online}) == [0, 60, 120]
    assert all(np.isfinite(r["eval_return"]) for r in online)
    assert all(np.isfinite(r["critic_loss"]) for r in online if r["step"] > 0)  # updates ran on device-collected data


def test_device_collector_fills_the_replay_like_the_data():
    """The device loop's transitions: observations chain (next_obs of a step is the obs of the
    next within an episode), rewards are scaled like the data's, truncation at the time limit."""
    from smac_jax.data import replay
    from smac_jax.learners import make_learner
    from smac_jax.training.online import DeviceCollector, make_act_step
    from smac_jax.training.phases import stack_seeds
    from smac_jax.training.steps import unalias

    env = jax_envs.make_jax_env(gym.make("Pendulum-v1", max_episode_steps=10).spec)
    learner = make_learner("sac", 3, 1, {"hidden_dims": (8, 8), "batch_size": 4})
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = unalias(jax.vmap(learner.init)(keys))  # donated: no two leaves may share a buffer
    buffers = stack_seeds(replay.empty_buffer(3, 1, 64), 2)
    collector = DeviceCollector(env, keys, reward_scale=0.5, reward_bias=1.0)
    loop = collector.make_loop(learner, utd=1, mixing_ratio=None, train=False)
    actions = make_act_step(learner)(states, collector.obs, keys, 0)
    states, buffers, actions, _ = loop(states, buffers, actions, None, keys, 0, 25)
    t = replay.unpack(buffers.rows[0, :25], 3, 1)
    raw = (np.asarray(t.reward) - 1.0) / 0.5
    assert (raw <= 0).all() and (raw >= -16.3).all()  # Pendulum's reward range, scaled back
    np.testing.assert_array_equal(np.nonzero(np.asarray(t.truncated))[0], [9, 19])
    assert not np.asarray(t.terminated).any()
    same_episode = np.asarray(t.truncated[:-1]) == 0
    np.testing.assert_array_equal(np.asarray(t.next_obs[:-1])[same_episode], np.asarray(t.obs[1:])[same_episode])
    assert not np.allclose(t.next_obs[9], t.obs[10])  # a new episode starts after the time limit


@pytest.mark.parametrize("online, evaluation, field", [("jax", "gymnasium", "online.env"),
                                                       ("gymnasium", "jax", "eval.env")])
def test_a_dataset_without_a_port_is_refused_before_the_run(online, evaluation, field):
    """online.env or eval.env 'jax' on a dataset whose environment has no port: one line naming the field."""
    import ml_collections

    from smac_jax.errors import ConfigError
    from smac_jax.training import pipeline

    class AntData:
        def make_jax_env(self, eval_env=False):
            return jax_envs.make_jax_env("Ant-v5")

    config = ml_collections.ConfigDict({"online": {"env": online}, "eval": {"env": evaluation, "episodes": 5}})
    with pytest.raises(ConfigError, match=rf"^{field}='jax': Ant-v5 has no JAX-native port"):
        pipeline.check_online_env(config, AntData())


def test_a_spec_with_wrappers_is_refused():
    """gym.make(spec) applies a spec's additional wrappers (a Minari dataset recorded from a wrapped
    environment stores them); the port cannot, so its rewards or observations would not be the data's."""
    for wrap in (lambda e: gym.wrappers.ClipReward(e, -1.0, 1.0), gym.wrappers.TimeAwareObservation):
        with pytest.raises(ValueError, match="wrapper") as e:
            jax_envs.make_jax_env(wrap(gym.make("Pendulum-v1")).spec)
        assert "\n" not in str(e.value)


def test_online_env_jax_is_refused_before_a_dataset_is_generated(monkeypatch, tmp_path):
    """A task whose dataset the launcher would generate from an environment without a port (or
    the port's backend missing) fails in check_start, before the generation, not after it."""
    import importlib.util
    import sys

    import minari

    from smac_jax.errors import ConfigError
    from smac_jax.training import pipeline

    spec = importlib.util.spec_from_file_location("o2o_cfg", "configs/o2o.py")
    o2o = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(o2o)
    monkeypatch.setattr(minari, "list_local_datasets", lambda *a, **k: {})
    config = o2o.get_config("hopper,td3bc,sac")
    config.online.env = "jax"
    config.dataset.generate_env = "Ant-v5"
    with pytest.raises(ConfigError, match=r"online.env='jax': Ant-v5 has no JAX-native port"):
        pipeline.check_start(config, str(tmp_path / "w"))
    config.dataset.generate_env = "Hopper-v5"
    monkeypatch.setitem(sys.modules, "mujoco.mjx", None)  # MJX not installed
    with pytest.raises(ConfigError, match="need MJX"):
        pipeline.check_start(config, str(tmp_path / "w"))
    config = o2o.get_config("quickstart,td3bc,sac")
    config.online.env = "jax"
    pipeline.check_start(config, str(tmp_path / "w"))  # Pendulum: fine
    monkeypatch.setitem(sys.modules, "gymnax", None)  # gymnax not installed
    with pytest.raises(ConfigError, match="needs gymnax"):
        pipeline.check_start(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_device_evaluation_agrees_with_gymnasium_on_pendulum():
    """eval.env='jax': the same policy evaluated on Gymnasium's Pendulum (host) and on the port
    (device) over 2 lanes x 100 episodes of 30 steps: lengths equal, mean returns within 3
    standard errors (the start states are other draws of the same distribution)."""
    from smac_jax.training.evaluation import DeviceEvaluator, Evaluator

    act_fn = jax.jit(lambda st, obs: jnp.clip(st[:, None, None] * obs[..., 2:3], -1.0, 1.0))
    states = jnp.asarray([-0.5, 0.2])
    host = Evaluator(lambda: envs.make_env("Pendulum-v1", max_episode_steps=30), 2, 100, base_seed=0)
    device = DeviceEvaluator(jax_envs.make_jax_env(gym.make("Pendulum-v1", max_episode_steps=30).spec), 2, 100,
                             base_seed=0)
    a, b = host(act_fn, states, 0, 0.99), device(act_fn, states, 0, 0.99)
    host.close()
    assert (a.lengths == 30).all() and (b.lengths == 30).all()
    for i in range(2):
        se = np.sqrt(a.returns[i].var() / 100 + b.returns[i].var() / 100)
        assert abs(a.returns[i].mean() - b.returns[i].mean()) < 3 * se, (i, a.returns[i].mean(), b.returns[i].mean())
        ratio = b.discounted[i].mean() / a.discounted[i].mean()
        assert 0.8 < ratio < 1.25
    assert a.returns[0].mean() != a.returns[1].mean()  # the two policies differ


def test_a_run_evaluated_on_the_device(make_tiny_config, tmp_path):
    """eval.env='jax' changes the evaluations only: a run's training metrics equal those of the
    same run evaluated on Gymnasium's Pendulum, its evaluations are finite."""
    from smac_jax.training import pipeline

    kw = {"offline.steps": 100}
    config = make_tiny_config("td3bc", "sac", **kw, **{"eval.env": "jax"})
    pipeline.run(config, str(tmp_path / "a"), progress=False)
    pipeline.run(make_tiny_config("td3bc", "sac", **kw), str(tmp_path / "g"), progress=False)
    rows = {k: [json.loads(line) for line in open(tmp_path / k / "metrics.jsonl")] for k in ("a", "g")}
    assert [r["step"] for r in rows["a"]] == [r["step"] for r in rows["g"]]
    for ra, rg in zip(rows["a"], rows["g"]):
        assert np.isfinite(ra["eval_return"])
        for k in ("critic_loss", "actor_loss"):
            if k in rg:
                assert ra[k] == rg[k]
    assert any(ra["eval_return"] != rg["eval_return"] for ra, rg in zip(rows["a"], rows["g"]))
