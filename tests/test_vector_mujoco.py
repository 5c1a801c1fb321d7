"""smac_jax.vector_mujoco: lockstep MuJoCo locomotion stepping gives exactly what gymnasium's
``env.step`` gives (returns and episode lengths compared for equality through
``evaluate_stacked``), on terminating, truncated and standardised-observation variants; anything
else falls back to ``env.step``."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from smac_jax.analysis import landscape as ls
from smac_jax.envs import make_env
from smac_jax.learners import make_learner
from smac_jax.vector_mujoco import locomotion_batch


def _grid(env_fn, points=3):
    probe = env_fn()
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    learner = make_learner("sac", obs_dim, act_dim, {"hidden_dims": (16, 16)})
    actors = [learner.init(jax.random.PRNGKey(i)).params["actor"] for i in range(points)]
    return learner, ls.stack(actors)


@pytest.mark.parametrize("env_id,kwargs", [
    ("Hopper-v5", {}),  # random actors fall: terminations at different steps
    ("Hopper-v5", {"terminate_when_unhealthy": False, "max_episode_steps": 40}),  # time-limit truncation
    ("Walker2d-v5", {"max_episode_steps": 60}),
    ("HalfCheetah-v5", {"max_episode_steps": 30, "ctrl_cost_weight": 0.3}),
])
def test_lockstep_matches_gymnasium_step(env_id, kwargs):
    env_fn = lambda: make_env(env_id, **kwargs)  # noqa: E731
    learner, grid = _grid(env_fn)
    fast, fast_len = ls.evaluate_stacked(learner, grid, env_fn, 2, 7, return_lengths=True, vectorized=True)
    ref, ref_len = ls.evaluate_stacked(learner, grid, env_fn, 2, 7, return_lengths=True, vectorized=False)
    np.testing.assert_array_equal(fast_len, ref_len)
    np.testing.assert_array_equal(fast, ref)
    assert np.unique(ref).size == ref.size  # the points and episodes differ (the check is not vacuous)
    if "max_episode_steps" in kwargs and env_id != "Walker2d-v5":
        assert (ref_len == kwargs["max_episode_steps"]).all()
    if env_id == "Hopper-v5" and not kwargs:
        assert ref_len.max() < 1000 and np.unique(ref_len).size > 1


def test_standardised_observations_match():
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=11).astype(np.float32), rng.uniform(0.5, 2, 11).astype(np.float32)
    env_fn = lambda: make_env("Hopper-v5", obs_mean=mean, obs_std=std, max_episode_steps=50)  # noqa: E731
    learner, grid = _grid(env_fn, points=2)
    fast = ls.evaluate_stacked(learner, grid, env_fn, 2, 0, vectorized=True)
    np.testing.assert_array_equal(fast, ls.evaluate_stacked(learner, grid, env_fn, 2, 0, vectorized=False))


def test_unsupported_environments_fall_back_or_fail_clearly():
    import gymnasium as gym

    pend = [make_env("Pendulum-v1") for _ in range(2)]
    assert locomotion_batch(pend) is None
    stats = [gym.wrappers.RecordEpisodeStatistics(make_env("Hopper-v5"))]  # a wrapper it does not reproduce
    assert locomotion_batch(stats) is None
    assert locomotion_batch([make_env("Hopper-v5")]) is not None
    env_fn = lambda: make_env("Pendulum-v1", max_episode_steps=5)  # noqa: E731
    learner, grid = _grid(env_fn, points=2)
    auto = ls.evaluate_stacked(learner, grid, env_fn, 1, 0)  # falls back to env.step
    assert auto.shape == (2, 1) and np.isfinite(auto).all()
    with pytest.raises(ValueError, match="vectorized=True: Pendulum-v1"):
        ls.evaluate_stacked(learner, grid, env_fn, 1, 0, vectorized=True)


def test_training_evaluator_uses_it_with_identical_returns():
    """The training loops' Evaluator steps MuJoCo locomotion tasks in lockstep; its returns equal
    those of ``env.step``, round after round (fresh time limits each round)."""
    from smac_jax.training.evaluation import Evaluator, make_act_fn

    env_fn = lambda: make_env("Hopper-v5", max_episode_steps=80)  # noqa: E731
    learner = make_learner("sac", 11, 3, {"hidden_dims": (16, 16)})
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    act = make_act_fn(learner)
    fast = Evaluator(env_fn, 2, 3, base_seed=5, vectorized=True)  # an error if it could not vectorise
    ref = Evaluator(env_fn, 2, 3, base_seed=5, vectorized=False)
    for r in range(2):
        got, want = fast(act, states, r).returns, ref(act, states, r).returns
        np.testing.assert_array_equal(got, want)
        assert got.shape == (2, 3) and np.unique(want).size == 6
    fast.close(), ref.close()


def test_threaded_physics_gives_identical_episodes():
    """The physics split over threads (uneven shares; environments finishing at different steps)
    gives the same returns and lengths as one thread and as env.step."""
    import threading

    env_fn = lambda: make_env("Hopper-v5")  # noqa: E731  random actors fall at different steps
    learner, grid = _grid(env_fn, points=4)
    ref, ref_len = ls.evaluate_stacked(learner, grid, env_fn, 5, 3, return_lengths=True, vectorized=False)
    before = threading.active_count()
    for threads in (1, 3):
        got, got_len = ls.evaluate_stacked(learner, grid, env_fn, 5, 3, return_lengths=True, vectorized=True,
                                           threads=threads)
        np.testing.assert_array_equal(got_len, ref_len)
        np.testing.assert_array_equal(got, ref)
    assert np.unique(ref_len).size > 1  # episodes end at different steps: the shares change size
    assert threading.active_count() == before  # the physics threads were stopped
    envs = [make_env("Hopper-v5") for _ in range(40)]
    batch = locomotion_batch(envs)
    four = locomotion_batch(envs, threads=4)
    assert batch.threads >= 1 and four.threads == 4
    batch.close(), four.close()
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        locomotion_batch(envs, threads=0)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        locomotion_batch([make_env("Pendulum-v1")], threads=0)  # checked before the task is
    for env in envs:
        env.close()


def test_mujoco_model_warnings_are_shown_once_per_process(capsys):
    """MuJoCo 4 warns about HalfCheetah's deprecated ``settotalmass`` at every model load; building
    the environment many times (an evaluation builds one per seed and episode) shows it once, and
    a warning handler the user set receives every warning."""
    import mujoco

    from smac_jax import envs

    texts = []
    mujoco.set_mju_user_warning(texts.append)
    try:
        envs.make_env("HalfCheetah-v5").close()
        envs.make_env("HalfCheetah-v5").close()
    finally:
        mujoco.set_mju_user_warning(None)
    if not texts:
        pytest.skip("this MuJoCo version loads HalfCheetah without a warning")
    assert len(texts) == 2 and capsys.readouterr().err == ""  # the user's handler got both, nothing printed
    envs._MUJOCO_WARNINGS_SHOWN.discard(texts[0])
    for _ in range(3):
        envs.make_env("HalfCheetah-v5").close()
    err = capsys.readouterr().err
    assert err.count(texts[0]) == 1 and err.startswith("WARNING (MuJoCo, shown once): ")
    assert mujoco.get_mju_user_warning() is None  # the default handler is back
