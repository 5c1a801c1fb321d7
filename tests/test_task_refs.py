"""Task definitions against D4RL / Minari: dataset ids that exist, D4RL's reference returns, the
evaluation environment a dataset names, and the environment arguments a task sets."""
from __future__ import annotations

import gymnasium as gym

from conftest import load_o2o_config_module, tiny_config

from smac_jax.data.d4rl import D4RL_REFERENCE_SCORES
from smac_jax.training.dataset_factory import random_episodes_dataset


def test_kitchen_is_scored_with_d4rl_reference_returns():
    # D4RL (d4rl/infos.py): kitchen-*: 0 / 4, one point per sub-task; Minari's copy may carry none.
    assert D4RL_REFERENCE_SCORES["kitchen"] == (0.0, 4.0)
    c = load_o2o_config_module().get_config("d4rl-kitchen-partial")
    assert (c.ref_min_score, c.ref_max_score) == (0.0, 4.0)


def test_locomotion_paper_tasks_load_d4rl_data_not_a_missing_minari_id():
    # Minari's mujoco namespace holds simple / medium / expert (regenerated on v5), no medium-replay;
    # D4RL's own files are imported by experiments/import_d4rl.py as d4rl/<env>/<dataset>-v2.
    mod = load_o2o_config_module()
    assert mod.get_config("d4rl-hopper-medium-replay").dataset.id == "d4rl/hopper/medium-replay-v2"
    assert mod.get_config("d4rl-walker2d-medium-replay").dataset.id == "d4rl/walker2d/medium-replay-v2"


def test_evaluation_and_online_envs_use_the_datasets_eval_env(minari_store):
    from smac_jax.data.dataset import load_dataset_from_config
    from smac_jax.training.phases import RunContext
    import tempfile

    ds_id = "test/pendulum/evalspec-v0"
    random_episodes_dataset(gym.make("Pendulum-v1", max_episode_steps=20), ds_id, 2,
                            eval_env=gym.make("Pendulum-v1", max_episode_steps=7),
                            ref_min_score=-400.0, ref_max_score=0.0, algorithm_name="uniform random")
    c = tiny_config(ds_id)
    ds = load_dataset_from_config(c.dataset)
    with tempfile.TemporaryDirectory() as wd:
        ctx = RunContext.build(c, wd, ds, resume=False, progress=False)
        try:
            assert ctx.evaluator.envs[0].spec.max_episode_steps == 7
        finally:
            ctx.close()


def test_a_missing_d4rl_import_says_how_to_import_it(minari_store):
    import pytest
    from smac_jax.data.dataset import DatasetError, load_dataset_from_config

    c = load_o2o_config_module().get_config("d4rl-hopper-medium-replay")
    with pytest.raises(DatasetError, match="experiments/import_d4rl.py"):
        load_dataset_from_config(c.dataset)


def test_env_kwargs_reach_the_evaluation_and_online_environments(minari_store, pendulum_dataset_id, tmp_path):
    from smac_jax.data.dataset import load_dataset_from_config
    from smac_jax.training.phases import RunContext, make_collector

    c = tiny_config(pendulum_dataset_id)
    c.dataset.env_kwargs = {"g": 9.81}
    ds = load_dataset_from_config(c.dataset)
    ctx = RunContext.build(c, str(tmp_path), ds, resume=False, progress=False)
    try:
        assert ctx.evaluator.envs[0].unwrapped.g == 9.81
        collector = make_collector(ctx)
        assert [e.unwrapped.g for e in collector.envs] == [9.81, 9.81]
        collector.close()
    finally:
        ctx.close()
    vec = ds.make_vector_env(2)
    assert [e.unwrapped.g for e in vec.envs] == [9.81, 9.81]
    vec.close()
    assert load_dataset_from_config(tiny_config(pendulum_dataset_id).dataset).make_env().unwrapped.g == 10.0


def test_antmaze_episodes_end_at_the_goal_as_in_d4rls_evaluation():
    import pytest

    pytest.importorskip("gymnasium_robotics")
    from smac_jax import envs

    mod = load_o2o_config_module()
    for task in (t for t in mod.TASKS if t.startswith("d4rl-antmaze-")):
        c = mod.get_config(task)
        assert dict(c.dataset.env_kwargs) == {"continuing_task": False, "reset_target": False}
        assert (c.ref_min_score, c.ref_max_score) == (0.0, 1.0)  # the return is 1 at the goal, else 0
    envs.ensure_registered("AntMaze_UMaze-v4")
    env = envs.make_env("AntMaze_UMaze-v4", **dict(c.dataset.env_kwargs))
    try:
        assert env.unwrapped.continuing_task is False and env.unwrapped.reset_target is False
    finally:
        env.close()
