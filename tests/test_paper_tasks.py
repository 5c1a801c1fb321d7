"""The SMAC paper's six D4RL tasks as configs, and what the binary Adroit tasks need: a 0 / 1
reward from the task's success signal in the data and online, and the success rate as the score.

The Adroit tests write a real Minari dataset of Gymnasium-Robotics' AdroitHandDoor-v1 (the
environment the Minari D4RL door datasets store) and skip where Gymnasium-Robotics is missing.
"""
from __future__ import annotations

import contextlib
import io
import json
import os

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_o2o_config_module, tiny_config

from smac_jax.data.dataset import DatasetError, load_dataset, load_dataset_from_config, success_rewards
from smac_jax.envs import SuccessReward, make_env
from smac_jax.training.dataset_factory import random_episodes_dataset
from smac_jax.training.evaluation import run_episodes
from smac_jax.training.online import OnlineCollector
from smac_jax.training.phases import check_env_fits
from smac_jax.training.pipeline import ConfigError, run, validate_config

DOOR_ID = "test/door/cloned-v0"
DOOR_STEPS = 12  # episode length of the test dataset (its env spec's time limit)
EVERY = 3  # the test dataset marks step t a success where t % EVERY == EVERY - 1


# -- the binary reward ----------------------------------------------------------------------------
def test_success_rewards_align_minari_infos_with_steps():
    # Minari stores the reset's info first: infos[t + 1] belongs to step t.
    infos = {"success": np.array([True, False, True, False])}
    np.testing.assert_array_equal(success_rewards(infos, 3, "here"), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(success_rewards({"success": [0, 1, 1]}, 3, "here"), [0.0, 1.0, 1.0])
    with pytest.raises(DatasetError, match=r"^here: no per-step infos\['success'\] stored \(info keys: \['state'\]\)"):
        success_rewards({"state": np.zeros(4)}, 3, "here")
    with pytest.raises(DatasetError, match="has 6 entries for 3 steps"):
        success_rewards({"success": np.zeros(6)}, 3, "here")


class _Reaches(gym.Env):
    """A 1-D toy task of 5-step episodes that reports ``success`` (when asked to), true on the
    third step of every episode, or with ``alternate`` of every other episode from the first
    (episodes counted by resets)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, reports: bool = True, alternate: bool = False):
        self.reports, self.alternate, self.t, self.episodes = reports, alternate, 0, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episodes = 0, self.episodes + 1
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        succeeds = self.t == 3 and (not self.alternate or self.episodes % 2 == 1)
        info = {"success": succeeds} if self.reports else {}
        return np.zeros(1, np.float32), -7.0, False, self.t >= 5, info


def test_success_reward_wrapper_replaces_the_reward_by_the_success_signal():
    env = SuccessReward(_Reaches())
    env.reset(seed=0)
    rewards = [env.step(np.zeros(1))[1] for _ in range(5)]
    assert rewards == [0.0, 0.0, 1.0, 0.0, 0.0]
    silent = SuccessReward(_Reaches(reports=False))
    silent.reset(seed=0)
    with pytest.raises(ValueError, match=r"reports no info\['success'\]"):
        silent.step(np.zeros(1))
    with pytest.raises(ValueError, match="reward must be one of"):
        make_env("Pendulum-v1", reward="sparse")


def test_episodes_report_success_where_the_environment_does():
    eps = run_episodes([_Reaches(), _Reaches(reports=False)], lambda o: np.zeros((2, 1)), [0, 1])
    assert eps.success[0] == 1.0 and np.isnan(eps.success[1])
    np.testing.assert_array_equal(eps.returns, [-35.0, -35.0])  # the environment's own reward untouched


def test_a_success_not_yet_counted_survives_a_resume():
    """The collector's success bookkeeping is part of its checkpoint: an episode that succeeded at
    its third step and is checkpointed before it ends counts as a success once it ends after a resume."""
    a = OnlineCollector(lambda: _Reaches(), [0])
    for _ in range(3):
        a.step(np.zeros((1, 1), np.float32))
    b = OnlineCollector(lambda: _Reaches(), [0])
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for _ in range(2):
        b.step(np.zeros((1, 1), np.float32))
    counts = b.success_counts()
    assert counts["train_episodes"].tolist() == [1] and counts["train_successes"].tolist() == [1]


# -- the six tasks ------------------------------------------------------------------------------
def test_the_papers_six_tasks_are_configs():
    mod = load_o2o_config_module()
    assert len(mod.PAPER_TASKS) == 6
    ids, refs = {}, {}
    for task in mod.PAPER_TASKS:
        c = mod.get_config(task)
        validate_config(c)
        assert not c.dataset.generate  # downloaded, never generated
        ids[task] = c.dataset.id
        binary = task.endswith("-binary")
        assert c.dataset.reward == ("success" if binary else "env")
        assert (c.dataset.reward_scale, c.dataset.reward_bias) == ((10.0, -5.0) if binary else (1.0, 0.0))
        refs[task] = (c.ref_min_score, c.ref_max_score)
    assert ids == {
        "d4rl-hopper-medium-replay": "d4rl/hopper/medium-replay-v2",
        "d4rl-walker2d-medium-replay": "d4rl/walker2d/medium-replay-v2",
        "d4rl-kitchen-partial": "D4RL/kitchen/partial-v2",
        "d4rl-door-binary": "D4RL/door/cloned-v2",
        "d4rl-pen-binary": "D4RL/pen/cloned-v2",
        "d4rl-relocate-binary": "D4RL/relocate/cloned-v2",
    }
    antmazes = {t: mod.get_config(t) for t in mod.TASKS if t.startswith("d4rl-antmaze-")}
    assert sorted(c.dataset.id for c in antmazes.values()) == sorted(
        f"D4RL/antmaze/{m}-v1" for m in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play",
                                         "large-diverse"))
    for c in antmazes.values():  # the stored sparse reward, Cal-QL's transform
        validate_config(c)
        assert (c.dataset.reward, c.dataset.reward_scale, c.dataset.reward_bias) == ("env", 10.0, -5.0)
    # D4RL's reference returns for the locomotion tasks; the others' come with their datasets
    assert refs["d4rl-hopper-medium-replay"] == (-20.272305, 3234.3)
    assert refs["d4rl-walker2d-medium-replay"] == (1.629008, 4592.3)
    assert refs["d4rl-kitchen-partial"] == (0.0, 4.0)
    for task in ("pendulum", "hopper", "quickstart"):  # the other tasks keep the environment's reward
        assert mod.get_config(task).dataset.reward == "env"
        assert mod.get_config(task).ref_min_score is None


def test_a_paper_task_without_its_dataset_says_how_to_download_it(minari_store):
    c = load_o2o_config_module().get_config("d4rl-door-binary")
    with pytest.raises(DatasetError, match="minari download D4RL/door/cloned-v2"):
        load_dataset_from_config(c.dataset)


def test_a_bad_reward_kind_is_one_line(make_tiny_config):
    with pytest.raises(ConfigError, match=r"^dataset.reward must be one of \('env', 'success'\), got 'binary'$"):
        validate_config(make_tiny_config(**{"dataset.reward": "binary"}))


# -- a real Adroit task ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def door_dataset_id(minari_store):
    """A Minari dataset of AdroitHandDoor-v1 in the real format: 4 random episodes of
    ``DOOR_STEPS`` steps, its per-step infos holding ``success``. Random actions never open the
    door, so the stored success marks every ``EVERY``-th step instead: the loader's alignment of
    infos with steps is then visible in the rewards."""
    gr = pytest.importorskip("gymnasium_robotics")
    import minari

    gym.register_envs(gr)

    class MarkSuccess(minari.StepDataCallback):
        def __call__(self, env, **kwargs):
            data = super().__call__(env, **kwargs)
            self.t = 0 if data["action"] is None else self.t + 1  # steps taken (0 at a reset)
            data["info"] = {"success": self.t > 0 and (self.t - 1) % EVERY == EVERY - 1}
            return data

    random_episodes_dataset(gym.make("AdroitHandDoor-v1", max_episode_steps=DOOR_STEPS), DOOR_ID, 4,
                            collector_kwargs=dict(step_data_callback=MarkSuccess, record_infos=True),
                            algorithm_name="uniform random", description="tiny AdroitHandDoor-v1 dataset for smac_jax tests")
    return DOOR_ID


def test_binary_door_data_and_environment(door_dataset_id):
    d = load_dataset(door_dataset_id, reward="success", reward_scale=10.0, reward_bias=-5.0)
    t = d.transitions
    assert t.obs.shape == (4 * DOOR_STEPS, 39) and t.action.shape == (4 * DOOR_STEPS, 28)
    step = np.arange(t.reward.shape[0]) % DOOR_STEPS
    want = np.where(step % EVERY == EVERY - 1, 5.0, -5.0)  # 10 * success - 5
    np.testing.assert_array_equal(t.reward, want.astype(np.float32))
    np.testing.assert_array_equal(t.traj_return[::DOOR_STEPS], np.full(4, DOOR_STEPS // EVERY))  # raw 0 / 1 rewards
    dense = load_dataset(door_dataset_id)
    assert len(np.unique(dense.transitions.reward)) > 2  # the environment's own (dense) reward
    # scores in the binary task's unit, as its evaluations: 100 for an episode with a success
    assert d.describe() == f"{4 * DOOR_STEPS:,} transitions, 4 episodes, 100.0% of them successful"
    np.testing.assert_array_equal(d.normalized_score(np.array([0.0, 1.0, 3.0])), [0.0, 100.0, 100.0])
    assert not dense.describe().endswith("successful")
    check_env_fits(d)
    env = d.make_env()
    env.reset(seed=0)
    rewards = {env.step(np.zeros(28, np.float32))[1] for _ in range(5)}
    assert rewards == {0.0}  # binary online too: the door stays shut
    eps = run_episodes([d.make_env(), dense.make_env()], lambda o: np.zeros((2, 28)), [0, 1])
    np.testing.assert_array_equal(eps.success, [0.0, 0.0])  # reported by the task with either reward
    assert eps.returns[0] == 0.0 and eps.returns[1] != 0.0
    np.testing.assert_array_equal(eps.lengths, [DOOR_STEPS, DOOR_STEPS])


def test_binary_door_task_through_the_pipeline(door_dataset_id, tmp_path):
    c = tiny_config(door_dataset_id, **{"dataset.reward": "success", "dataset.reward_scale": 10.0,
                                        "dataset.reward_bias": -5.0, "offline.steps": 50, "offline.ckpt_every": 50,
                                        "online.steps": 60, "online.eval_every": 30, "online.ckpt_every": 30})
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run(c, str(tmp_path), progress=False)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "eval_return" in r]
    assert evals and {r["phase"] for r in evals} == {"offline", "online"}
    for r in evals:  # the score of a binary task is its success rate in percent
        assert r["eval_success"] in (0.0, 1.0) and r["eval_score"] == 100.0 * r["eval_success"]
        assert r["eval_return"] == pytest.approx(DOOR_STEPS * r["eval_success"], abs=DOOR_STEPS)
    assert summary["metric"] == "eval_score" and summary["metric_label"] == "success rate (%)"
    # CORL's regret from the training episodes: 60 steps of 12-step episodes, the door never opened
    online = [r for r in evals if r["phase"] == "online" and r["step"] > 0]
    assert [r["train_episodes"] for r in online if r["step"] == 60] == [5, 5]
    assert all(r["train_successes"] == 0 for r in online)
    assert summary["corl_regret"] == [1.0, 1.0]


def test_online_collector_counts_training_episodes_that_succeed():
    make = lambda: _Reaches(alternate=True)  # noqa: E731  (succeeds in episodes 1, 3, ... after a reset)
    col = OnlineCollector(make, [0, 1])
    assert col.success_counts() == {}  # nothing reported before the first step
    for _ in range(12):  # 2 whole episodes of 5 steps each (the first succeeds), and 2 steps of a third
        col.step(np.zeros((2, 1), np.float32))
    counts = col.success_counts()
    np.testing.assert_array_equal(counts["train_episodes"], [2, 2])
    np.testing.assert_array_equal(counts["train_successes"], [1, 1])
    again = OnlineCollector(make, [0, 1])
    # a resumed run counts on (its environments reset twice before replaying: no success in episode 3)
    again.load_state_dict(json.loads(json.dumps(col.state_dict())))
    for _ in range(3):
        again.step(np.zeros((2, 1), np.float32))
    np.testing.assert_array_equal(again.success_counts()["train_episodes"], [3, 3])
    np.testing.assert_array_equal(again.success_counts()["train_successes"], [1, 1])
    quiet = OnlineCollector(lambda: _Reaches(reports=False), [0])
    quiet.step(np.zeros((1, 1), np.float32))
    assert quiet.success_counts() == {}


def test_a_score_model_fitted_on_other_rewards_is_refused(door_dataset_id, tmp_path):
    from smac_jax.score import model as sm
    from smac_jax.score.train import ScoreModelMismatch, fit_or_load_score_model

    cfg = sm.default_score_config()
    cfg.update(steps=2, hidden_dim=16, n_blocks=1, time_dim=8, time_mlp_dim=16, batch_size=8)
    path = str(tmp_path / "score")
    with contextlib.redirect_stdout(io.StringIO()):
        fit_or_load_score_model(path, load_dataset(door_dataset_id), cfg, progress=False)
    # SMAC conditions on returns, which a binary reward changes
    with pytest.raises(ScoreModelMismatch, match="fitted with reward='env', but this run has reward='success'"):
        fit_or_load_score_model(path, load_dataset(door_dataset_id, reward="success"), cfg, progress=False)
    with open(os.path.join(path, "score_model.json")) as f:  # a model saved before the reward was recorded
        saved = json.load(f)
    del saved["meta"]["reward"]
    with open(os.path.join(path, "score_model.json"), "w") as f:
        json.dump(saved, f)
    fit_or_load_score_model(path, load_dataset(door_dataset_id), cfg, progress=False)  # still loads


def test_binary_reward_on_an_environment_without_success_stops_before_training(minari_store, tmp_path):
    from smac_jax.training.dataset_factory import random_episodes_dataset

    # success infos in the data (all False), but Pendulum reports no success online
    random_episodes_dataset(gym.make("Pendulum-v1", max_episode_steps=10), "test/pendulum/success-v0", 2,
                            record_success=True)
    d = load_dataset("test/pendulum/success-v0", reward="success")
    assert d.transitions.reward.tolist() == [0.0] * 20
    with pytest.raises(DatasetError, match=r"^test/pendulum/success-v0: its environment cannot be built to match "
                                           r"the data \(ValueError: Environment 'Pendulum-v1' reports no info"):
        check_env_fits(d)


def test_antmaze_tasks_take_the_aca_and_samg_papers_settings():
    mod = load_o2o_config_module()
    aca = mod.get_config("d4rl-antmaze-umaze,sacml,aca")
    assert (aca.dataset.reward_scale, aca.dataset.reward_bias, aca.online.agent.beta) == (1.0, -1.0, 3.0)
    cql = mod.get_config("d4rl-antmaze-large-play,cql,samg_cql")
    assert (cql.online.replay.capacity, cql.online.agent.p_threshold, cql.online.agent.cql_alpha) == (50_000, 0.7, 2.0)
    iql = mod.get_config("d4rl-antmaze-umaze,iql,samg_iql")
    assert (iql.online.replay.capacity, iql.online.agent.p_threshold) == (50_000, 0.6)
    assert mod.get_config("d4rl-antmaze-umaze,cql,sac").dataset.reward_bias == -5.0  # others: Cal-QL's transform
    hopper = mod.get_config("hopper,cql,samg_cql")  # elsewhere: SAMG's general settings
    assert (hopper.online.replay.capacity, hopper.online.agent.p_threshold, hopper.online.agent.cql_alpha) == (20_000, 0.6, 5.0)
