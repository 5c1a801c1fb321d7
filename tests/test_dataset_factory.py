"""The dataset factory's SAC run: trained through the library's fused online loop, and the episodes
it records are exactly the stream the environment produced (so ``medium-replay`` is faithful)."""
from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np

from smac_jax.training import dataset_factory

SEED, STEPS, EVAL_EVERY, STARTS = 3, 300, 100, 100


def test_factory_sac_run_records_the_stream_it_trained_on():
    learner, snaps, episodes, _ = dataset_factory._train_sac(
        "Pendulum-v1", STEPS, EVAL_EVERY, 1, SEED, STARTS, {"hidden_dims": (16, 16), "batch_size": 16}, chunk=64)
    assert [s[0] for s in snaps] == [100, 200, 300]
    # Training moved the actor between the first and the last snapshot.
    first, last = snaps[0][2].params["actor"], snaps[-1][2].params["actor"]
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(last)))

    # 300 steps of 200-step episodes: one whole episode, then one cut short at the end of training.
    assert [len(e["actions"]) for e in episodes] == [200, 100]
    assert episodes[1]["truncations"][-1] and not any(episodes[1]["truncations"][:-1])

    # Replaying the recorded actions from the recorded resets reproduces every observation and reward.
    env = gym.make("Pendulum-v1")
    for i, ep in enumerate(episodes):
        obs, _ = env.reset(seed=SEED if i == 0 else SEED + 100_000 + i)
        np.testing.assert_array_equal(obs, ep["observations"][0])
        for t, a in enumerate(ep["actions"]):
            obs, r, *_ = env.step(a)
            np.testing.assert_array_equal(obs, ep["observations"][t + 1])
            assert r == ep["rewards"][t]

    # The first STARTS actions are the action space's own uniform draws; the ones after are the policy's.
    actions = np.concatenate([np.stack(e["actions"]) for e in episodes])
    space = gym.make("Pendulum-v1").action_space
    space.seed(SEED)
    draws = np.stack([space.sample() for _ in range(STARTS + 20)])
    np.testing.assert_allclose(actions[:STARTS], draws[:STARTS], atol=1e-6)
    assert not np.allclose(actions[STARTS:STARTS + 20], draws[STARTS:], atol=1e-3)


def test_the_medium_snapshot_and_its_overshoot_warning():
    from smac_jax.training.dataset_factory import medium_snapshot
    snaps = [(1000, 10.0), (2000, 40.0), (3000, 90.0)]
    # target 35: the snapshot at 2000 (40) is close to it
    assert medium_snapshot(snaps, 35.0, 100.0, 1000) == ((2000, 40.0), None)
    # target 45: the first snapshot above it returns 90, 82% of the way to the expert (100)
    med, warning = medium_snapshot(snaps, 45.0, 100.0, 1000)
    assert med == (3000, 90.0) and "returns 90.0, 82% of the way" in warning and "now 1000" in warning
    # no snapshot reaches the target: the last one, below it
    assert medium_snapshot(snaps, 95.0, 100.0, 1000) == ((3000, 90.0), None)
