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
        "Pendulum-v1", STEPS, EVAL_EVERY, 1, SEED, STARTS, {"hidden_dims": (16, 16), "batch_size": 16}, chunk=64,
        snapshot_every=50)
    # an actor every 50 steps, evaluated every 100
    assert [s[0] for s in snaps] == [50, 100, 150, 200, 250, 300]
    assert [s[1] is None for s in snaps] == [True, False] * 3
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


def test_the_medium_snapshot_is_refined_between_the_bracketing_evaluations():
    from smac_jax.training.dataset_factory import medium_snapshot
    # evaluated every 4 snapshots; the unevaluated ones' returns are known only to `evaluate`
    truth = {1: 5.0, 2: 50.0, 3: 8.0, 4: 10.0, 5: 20.0, 6: 48.0, 7: 70.0, 8: 95.0}
    snaps = [(k, truth[k] if k % 4 == 0 else None, f"actor{k}") for k in truth]
    asked = []

    def evaluate(snap):
        asked.append(snap[0])
        return truth[snap[0]]

    # target 45: the evaluations bracket the crossing between 4 (10) and 8 (95); the first of 5, 6, 7
    # at the target is 6. Snapshot 2 (50, before the last evaluation below the target) is not asked.
    assert medium_snapshot(snaps, 45.0, 100.0, 1, evaluate) == ((6, 48.0, "actor6"), None)
    assert asked == [5, 6]
    # target 80: none of 5, 6, 7 reaches it; the bracketing evaluation (95) does, and overshoots
    asked.clear()
    med, warning = medium_snapshot(snaps, 80.0, 100.0, 1, evaluate)
    assert med == (8, 95.0, "actor8") and asked == [5, 6, 7] and "now 1)" in warning
    # the crossing before the first evaluation: every snapshot before it is a candidate
    asked.clear()
    assert medium_snapshot(snaps, 9.0, 100.0, 1, evaluate)[0] == (2, 50.0, "actor2") and asked == [1, 2]
    # without `evaluate`, the evaluated snapshots only
    assert medium_snapshot(snaps, 45.0, 100.0, 1)[0] == (8, 95.0, "actor8")


class AimEnv(gym.Env):
    """A contextual bandit SAC learns in a few hundred steps: aim the action (in [-2, 2]) at twice the
    observation (in [-1, 1]); reward -(a - 2 o)^2; 20-step episodes."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.obs = self.np_random.uniform(-1, 1, (1,)).astype(np.float32)
        return self.obs, {}

    def step(self, action):
        r = -float((action[0] - 2.0 * self.obs[0]) ** 2)
        return self.reset()[0], r, False, False, {}


def test_generate_writes_four_minari_datasets_cut_at_the_medium_snapshot(minari_store, capsys):
    import minari
    import ml_collections
    import pytest

    from smac_jax.errors import DatasetError
    from smac_jax.training.dataset_factory import KINDS, generate_datasets

    if "FactoryAim-v0" not in gym.registry:
        gym.register("FactoryAim-v0", entry_point=f"{__name__}:AimEnv", max_episode_steps=20)
    kw = dict(seed=1, train_steps=600, eval_every=300, snapshot_every=100, eval_episodes=5, learning_starts=100,
              n_transitions=200, namespace="factorytest", agent_overrides={"hidden_dims": (16, 16), "batch_size": 16})
    ids = generate_datasets("FactoryAim-v0", **kw)
    assert ids == {k: f"factorytest/factoryaim/{k}-v0" for k in KINDS}
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "medium snapshot at step" in ln)
    med_step = int(line.split("medium snapshot at step ")[1].split()[0])
    # The untrained actor (aiming at 0: return about -27 against about -53 for random actions) already
    # reaches a third of the way to the expert: the refinement finds the kept actor at step 100,
    # between the evaluations (at 300 and 600).
    assert med_step == 100
    sets = {k: minari.load_dataset(i) for k, i in ids.items()}
    ref = {(d.storage.metadata["ref_min_score"], d.storage.metadata["ref_max_score"]) for d in sets.values()}
    assert len(ref) == 1 and next(iter(ref))[1] > next(iter(ref))[0]
    # medium-replay: the training stream up to the medium snapshot, and nothing after it
    assert sets["medium-replay"].total_steps == med_step
    assert f"medium snapshot at step {med_step}" in sets["medium-replay"].storage.metadata["description"]
    for k in ("random", "medium", "expert"):  # whole 20-step episodes, at least n_transitions steps
        assert sets[k].total_steps == 200
    # describe(): the data's size and its episodes' normalised score, against minari's own episodes
    from smac_jax.data.dataset import load_dataset
    lo, hi = next(iter(ref))
    scores = [100 * (float(np.sum(e.rewards)) - lo) / (hi - lo) for e in sets["medium"].iterate_episodes()]
    assert load_dataset(ids["medium"]).describe() == (
        f"200 transitions, 10 episodes, episodes scoring {np.mean(scores):.1f} on average, best {np.max(scores):.1f}")
    # the description records the generator's settings, and a launch script warns when a task's
    # config would have generated the local dataset with other ones
    from smac_jax.training.dataset_factory import ensure_dataset, recipe, recorded_recipe
    settings = {k: v for k, v in kw.items() if k != "namespace"}
    assert recorded_recipe(sets["medium"].storage.metadata["description"]) == recipe("medium", env="FactoryAim-v0", **settings)
    assert "n_transitions" not in recorded_recipe(sets["medium-replay"].storage.metadata["description"])
    dc = lambda **gk: ml_collections.ConfigDict(dict(
        id=ids["medium"], generate=True, generate_env="FactoryAim-v0", generate_kind="medium", generate_seed=1,
        generate_kwargs={**{k: v for k, v in settings.items() if k != "seed"}, **gk}))
    capsys.readouterr()
    ensure_dataset(dc())
    assert capsys.readouterr().out == ""
    ensure_dataset(dc(n_transitions=300, eval_every=200))
    assert capsys.readouterr().out.strip() == (
        f"[smac_jax] warning: dataset {ids['medium']!r} was generated with eval_every=300, n_transitions=200, not "
        "this config's eval_every=200, n_transitions=300; training on it as it is (replace it with "
        "experiments/make_dataset.py --overwrite and those settings to get the config's dataset)")
    # a config pointing at a local dataset its generator would not write (another environment's) is
    # not compared with its generator's settings: no advice that could not produce that dataset
    other = dc(n_transitions=300)
    other.generate_env = "Pendulum-v1"
    ensure_dataset(other)
    assert capsys.readouterr().out == ""
    with pytest.raises(DatasetError, match="factorytest/factoryaim/random-v0 already exists; pass overwrite"):
        generate_datasets("FactoryAim-v0", kinds=["random"], **kw)
    if "FactoryAim-v1" not in gym.registry:  # the same name, another version: the same dataset ids
        gym.register("FactoryAim-v1", entry_point=f"{__name__}:AimEnv", max_episode_steps=20)
    with pytest.raises(DatasetError, match="random-v0 already exists, generated from FactoryAim-v0, not FactoryAim-v1 "
                                           r"\(ids do not carry the environment's version\): pass another namespace"):
        generate_datasets("FactoryAim-v1", kinds=["random"], **kw)
    with pytest.raises(DatasetError, match=r"train_steps \(100\) must exceed learning_starts \(100\): SAC makes no "
                                           "update before learning_starts"):
        generate_datasets("FactoryAim-v0", kinds=["random"], **{**kw, "train_steps": 100, "namespace": "x"})
    with pytest.raises(DatasetError, match="snapshot_every must be >= 1, got 0"):
        generate_datasets("FactoryAim-v0", kinds=["random"], **{**kw, "snapshot_every": 0, "namespace": "x"})


def test_ensure_dataset_generates_a_missing_dataset_and_says_what_it_holds(minari_store, monkeypatch, capsys):
    import ml_collections

    from smac_jax.training import dataset_factory as df

    made = []

    def fake_generate(env_id, kinds, seed, **kw):  # the recipe's arguments reach the factory
        made.append((env_id, tuple(kinds), seed, kw))
        df.random_episodes_dataset(gym.make(env_id, max_episode_steps=10), "smac_jax/pendulum/medium-v0", 3,
                                   ref_min_score=-100.0, ref_max_score=0.0)

    monkeypatch.setattr(df, "generate_datasets", fake_generate)
    dc = ml_collections.ConfigDict(dict(id="smac_jax/pendulum/medium-v0", generate=True, generate_env="Pendulum-v1",
                                        generate_kind="medium", generate_seed=4, generate_kwargs={"train_steps": 7}))
    df.ensure_dataset(dc)
    assert made == [("Pendulum-v1", ("medium",), 4, {"train_steps": 7})]
    out = capsys.readouterr().out
    assert "[smac_jax] dataset 'smac_jax/pendulum/medium-v0': 30 transitions, 3 episodes, episodes scoring" in out
    df.ensure_dataset(dc)  # now local: nothing generated
    assert len(made) == 1


def test_a_failed_regeneration_keeps_the_existing_datasets(minari_store, monkeypatch):
    """--overwrite replaces a dataset only when its replacement is about to be written: a run that
    fails (or is interrupted) during the SAC training loses nothing; bad kinds and namespaces are
    refused before training."""
    import minari
    import pytest

    from smac_jax.errors import DatasetError
    from smac_jax.training import dataset_factory as df

    if "FactoryAim-v0" not in gym.registry:
        gym.register("FactoryAim-v0", entry_point=f"{__name__}:AimEnv", max_episode_steps=20)
    ids = [df.dataset_id("FactoryAim-v0", k, "keeptest") for k in ("random", "expert")]
    for i in ids:
        df.random_episodes_dataset(gym.make("FactoryAim-v0"), i, 2)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(df, "_train_sac", interrupted)
    with pytest.raises(KeyboardInterrupt):
        df.generate_datasets("FactoryAim-v0", ["random", "expert"], namespace="keeptest", overwrite=True)
    assert set(ids) <= set(minari.list_local_datasets())
    with pytest.raises(DatasetError, match=r"dataset kinds \['random', 'random'\] name a kind twice"):
        df.generate_datasets("FactoryAim-v0", ["random", "random"], namespace="other")
    with pytest.raises(DatasetError, match=r"namespace 'bad ns': the dataset id 'bad ns/factoryaim/random-v0' is "
                                           r"not a Minari dataset id"):
        df.generate_datasets("FactoryAim-v0", ["random"], namespace="bad ns")
