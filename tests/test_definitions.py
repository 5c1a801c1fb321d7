"""The numbers a results table is made of, each checked against its definition computed another
way: the transfer drop's window, the evaluation-noise drop's percentile, the regret's weighting
of tasks, the aggregates of a 1-D input, the summary's fields, the critic-units conversion,
sampling from a wrapped replay buffer, the mixed minibatch, the dataset fingerprint and the
action-bounds check."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from gymnasium import spaces

from smac_jax.analysis.drop import null_drop
from smac_jax.analysis.metrics import aggregate, normalized_regret, run_regrets
from smac_jax.data import replay
from smac_jax.data.dataset import OfflineDataset, validate_transitions
from smac_jax.errors import DatasetError
from smac_jax.training.evaluation import in_critic_units
from smac_jax.training.summary import summarize, transfer_drop
from smac_jax.types import Transitions


# -- run metrics --------------------------------------------------------------------------------
def test_the_drop_window_includes_the_evaluation_at_its_end_and_the_one_at_hand_over():
    # 10% of 1,000 online steps: the evaluations at 0 and at 100 count, the one at 200 does not
    assert transfer_drop(50.0, [0, 100, 200], [60.0, 30.0, 10.0], 1000) == 20.0
    assert transfer_drop(50.0, [0, 100, 200], [40.0, 70.0, 10.0], 1000) == 10.0
    assert transfer_drop(50.0, [0, 101], [55.0, 10.0], 1000) == 0.0


def test_the_noise_drop_percentile_is_the_90th():
    # two episode scores 0 and 100, one episode per evaluation, one online evaluation: the drop is
    # 100 when the offline draw is 100 and the online one 0 (probability 1/4), else 0; the 90th
    # percentile is then 100 (the median 0), the rate of drops above 5 is 1/4
    d = null_drop([0.0, 100.0], 1, 1, reps=40_000)
    assert d.p90 == 100.0
    assert d.rate == pytest.approx(0.25, abs=0.01) and d.mean == pytest.approx(25.0, abs=1.0)


def test_regret_averages_seeds_within_a_task_before_averaging_tasks():
    # task A: one seed with the lowest scores (regret 1); task B: three seeds at the top (regret 0)
    scores = {"A": {"m": np.array([[0.0, 0.0]]), "other": np.array([[10.0, 10.0]])},
              "B": {"m": np.full((3, 2), 10.0), "other": np.zeros((3, 2))}}
    assert normalized_regret(scores)["m"] == pytest.approx(0.5)  # (1 + 0) / 2, not (1 + 0 + 0 + 0) / 4
    np.testing.assert_allclose(run_regrets({"B": scores["B"]})["m"], [[0.0], [0.0], [0.0]])


def test_a_one_dimensional_aggregate_is_one_task_of_many_runs():
    x = np.array([0.1, 0.5, 0.2, 0.9, 0.4, 0.7, 0.3, 0.8])
    a, b = aggregate(x, reps=500)["scores"], aggregate(x[:, None], reps=500)["scores"]
    assert a == b
    assert a["iqm"].low < a["iqm"].point < a["iqm"].high  # runs resampled: a real interval
    assert a["mean"].point == pytest.approx(x.mean())


class _Log:
    """A metrics log holding given online evaluations (``evaluations(phase, key)`` as MetricsLog)."""

    def __init__(self, rows):
        self.rows = rows

    def evaluations(self, phase, key):
        steps = sorted({s for (p, s, _), _ in self.rows.items() if p == phase})
        seeds = sorted({seed for (p, _, seed) in self.rows if p == phase})
        vals = np.array([[self.rows[phase, s, seed].get(key, np.nan) for s in steps] for seed in seeds])
        if np.isnan(vals).all():
            return np.array([], int), np.zeros((0, 0))
        return np.array(steps), vals


def _config(**online):
    import ml_collections

    return ml_collections.ConfigDict(dict(
        dataset=dict(id="x/y-v0", reward="success"), offline=dict(learner="sac"),
        online=dict(learner="sac", steps=100, learning_starts=10, **online)))


def test_the_summary_reads_the_last_online_evaluation_and_the_last_episode_counts():
    rows = {("offline", 50, 0): {"eval_score": 40.0, "eval_return": -900.0},
            ("online", 0, 0): {"eval_score": 30.0, "eval_return": -700.0, "train_episodes": 2.0,
                               "train_successes": 1.0},
            ("online", 100, 0): {"eval_score": 70.0, "eval_return": -300.0, "train_episodes": 5.0,
                                 "train_successes": 2.0}}
    s = summarize(_Log(rows), _config(), score_available=True)
    assert s["online_final_mean"] == 70.0 and s["online_final_return_mean"] == -300.0
    assert s["corl_regret"] == [pytest.approx(1 - 2 / 5)]
    assert s["transfer_drop"] == [10.0]  # 40 - 30, the evaluation at hand-over (100 is outside 10%)


def test_critic_units_add_the_bias_over_the_discounted_steps():
    # 3 steps at gamma 0.5: the bias is summed as 1 + 0.5 + 0.25 = 1.75 and the scale multiplies the return
    assert in_critic_units(np.array([2.0]), np.array([3]), 0.5, 2.0, 1.0)[0] == pytest.approx(4.0 + 1.75)
    assert in_critic_units(np.array([2.0]), np.array([3]), 1.0, 1.0, -1.0)[0] == pytest.approx(2.0 - 3.0)


# -- replay -------------------------------------------------------------------------------------
def _rows(values):
    n = len(values)
    v = np.asarray(values, np.float32)
    return Transitions(obs=np.zeros((n, 3), np.float32), action=np.zeros((n, 2), np.float32), reward=v,
                       next_obs=np.zeros((n, 3), np.float32), terminated=np.zeros(n, np.float32),
                       truncated=np.zeros(n, np.float32), episode=np.zeros(n, np.int32), rtg=v, mc_return=v,
                       traj_return=v)


def test_a_wrapped_buffer_samples_every_filled_row():
    buf = replay.insert_many(replay.empty_buffer(3, 2, 4), _rows([1, 2, 3, 4]))
    buf = replay.insert(buf, jax.tree.map(lambda x: x[0], _rows([10])))  # overwrites row 0; write pointer at 1
    got = set(np.asarray(replay.sample(buf, jax.random.PRNGKey(0), 4000).reward).tolist())
    assert got == {10.0, 2.0, 3.0, 4.0}


def test_the_mixed_minibatch_draws_its_two_parts_independently():
    n = 64
    buf = replay.insert_many(replay.empty_buffer(3, 2, n), _rows(np.arange(n)))
    offline = _rows(np.arange(n) + 1000)
    batch = replay.sample_mixed(buf, offline, jax.random.PRNGKey(1), 64, 0.5)
    r = np.asarray(batch.reward)
    off_idx, on_idx = r[:32] - 1000, r[32:]
    assert (off_idx >= 0).all() and (on_idx < 1000).all()  # dataset rows first, then online rows
    assert not np.array_equal(off_idx, on_idx)  # not the same draw twice


# -- datasets -----------------------------------------------------------------------------------
def test_the_fingerprint_covers_every_field():
    t = _rows(np.arange(6))
    t = dataclasses.replace(t, obs=np.arange(18, dtype=np.float32).reshape(6, 3))
    base = OfflineDataset.__new__(OfflineDataset)
    base.transitions = t
    seen = {base.fingerprint()}
    for f in dataclasses.fields(t):
        changed = np.array(getattr(t, f.name), copy=True)
        changed.reshape(-1)[1] += 1
        other = OfflineDataset.__new__(OfflineDataset)
        other.transitions = dataclasses.replace(t, **{f.name: changed})
        seen.add(other.fingerprint())
    assert len(seen) == 1 + len(dataclasses.fields(t))


def test_the_action_tolerance_is_in_action_units():
    box = spaces.Box(-10.0, 10.0, (1,), np.float32)
    kw = dict(obs=np.zeros((1, 2)), rewards=np.zeros(1), action_space=box, action_tolerance=1e-3)
    validate_transitions(actions=np.array([[10.0005]]), **kw)
    with pytest.raises(DatasetError, match="outside the dataset's action space by more than"):
        validate_transitions(actions=np.array([[10.005]]), **kw)  # 5e-3 out: not within 1e-3 x the box's width


def test_top_n_breaks_ties_by_the_earlier_episode():
    t = _rows([5.0, 5.0, 5.0, 1.0])
    t = dataclasses.replace(t, episode=np.array([0, 1, 1, 2], np.int32), traj_return=np.array([5.0, 5.0, 5.0, 1.0]))
    np.testing.assert_array_equal(replay.top_n_transitions(t, 1).episode, [0])
    np.testing.assert_array_equal(replay.top_n_transitions(t, 2).episode, [0, 1, 1])
