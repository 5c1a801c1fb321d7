"""Tests for smac_jax.envs and smac_jax.data.dataset on tiny real Minari datasets.

All datasets are written to a temporary Minari store (MINARI_DATASETS_PATH points at a pytest
tmp dir; minari reads that variable at call time, so setting it before the first minari call
is enough).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium import spaces
from minari.data_collector.episode_buffer import EpisodeBuffer

from smac_jax import envs
from smac_jax.data.dataset import (
    DatasetError,
    OBS_STD_EPS,
    discounted_returns,
    flatten_observations,
    list_local_datasets,
    load_dataset,
    load_dataset_from_config,
    returns_to_go,
    validate_transitions,
)
from smac_jax.training.dataset_factory import random_episodes_dataset

ASYM_ID = "SmacJaxTest/AsymAction-v0"
DICT_ID = "SmacJaxTest/DictObs-v0"
ASYM_LOW = np.array([0.0, -1.0], np.float32)
ASYM_HIGH = np.array([2.0, 3.0], np.float32)


# --------------------------------------------------------------------------------------------
# Tiny custom environments (registered by string entry point so Minari can store their spec)
# --------------------------------------------------------------------------------------------
class AsymActionEnv(gym.Env):
    """Box(2) observations ``[t, t]``, actions in the non-symmetric box [0, 2] x [-1, 3]."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = spaces.Box(ASYM_LOW, ASYM_HIGH, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.last_action = None
        return np.zeros(2), {}

    def step(self, action):
        self.last_action = np.asarray(action)
        self.t += 1
        return np.full(2, float(self.t)), 1.0, self.t >= 3, False, {}


class DictObsEnv(gym.Env):
    """Nested Dict observations whose own key order (zeta, alpha, mid{y, x}) is not sorted."""

    observation_space = spaces.Dict(
        OrderedDict(
            zeta=spaces.Box(-np.inf, np.inf, (2,)),
            alpha=spaces.Box(-np.inf, np.inf, (1,)),
            mid=spaces.Dict(
                OrderedDict(y=spaces.Box(-np.inf, np.inf, (2, 2)), x=spaces.Box(-np.inf, np.inf, (1,)))
            ),
        )
    )
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self):
        t = float(self.t)
        return OrderedDict(
            zeta=np.array([100 + t, 200 + t], np.float32),
            alpha=np.array([t], np.float32),
            mid=OrderedDict(
                y=np.array([[10 + t, 11 + t], [12 + t, 13 + t]], np.float32),
                x=np.array([50 + t], np.float32),
            ),
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t), False, False, {}


# Sorted (Minari re-sorts Dict keys when it stores the space) flat layout of DictObsEnv.
SORTED_LAYOUT = [(("alpha",), 1), (("mid", "x"), 1), (("mid", "y"), 4), (("zeta",), 2)]


def _sorted_flat(t):
    return [t, 50 + t, 10 + t, 11 + t, 12 + t, 13 + t, 100 + t, 200 + t]


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari_datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        gym.register(ASYM_ID, entry_point=f"{__name__}:AsymActionEnv", max_episode_steps=5)
        gym.register(DICT_ID, entry_point=f"{__name__}:DictObsEnv", max_episode_steps=4)
        try:
            yield root
        finally:
            for env_id in (ASYM_ID, DICT_ID):
                gym.registry.pop(env_id, None)


def _buffer_dataset(dataset_id, episodes, *, env=None, observation_space=None, action_space=None):
    """Write a Minari dataset from explicit per-episode arrays."""
    buffers = [
        EpisodeBuffer(
            observations=np.asarray(ep["obs"]),
            actions=np.asarray(ep["actions"]),
            rewards=np.asarray(ep["rewards"], np.float64),
            terminations=np.asarray(ep["term"], bool),
            truncations=np.asarray(ep["trunc"], bool),
        )
        for ep in episodes
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "env_spec is None" for env-less datasets
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env,
            observation_space=observation_space,
            action_space=action_space,
            data_format="hdf5",
        )


# Three hand-written episodes in AsymActionEnv's spaces; returns 6, 7, -1.
HAND_EPISODES = [
    dict(
        obs=[[0, 0], [1, 1], [2, 2], [3, 3]],
        actions=[[0, -1], [2, 3], [1, 1]],
        rewards=[1, 2, 3],
        term=[0, 0, 1],
        trunc=[0, 0, 0],
    ),
    dict(
        obs=[[10, 10], [11, 11], [12, 12]],
        actions=[[0.5, 2.0], [2.0005, 3.0]],  # the second is within action_tolerance above high
        rewards=[10, -3],
        term=[0, 0],
        trunc=[0, 1],
    ),
    dict(obs=[[20, 20], [21, 21]], actions=[[1.5, 0.0]], rewards=[-1], term=[1], trunc=[0]),
]
HAND_ID = "test/asym/hand-v0"


@pytest.fixture(scope="module")
def hand_dataset(minari_root):
    return _buffer_dataset(HAND_ID, HAND_EPISODES, env=ASYM_ID)


@pytest.fixture(scope="module")
def pendulum_dataset(minari_root):
    return random_episodes_dataset(gym.make("Pendulum-v1", max_episode_steps=7), "test/pendulum/random-v0", 3,
                                   ref_min_score=-1000.0, ref_max_score=-100.0)


@pytest.fixture(scope="module")
def dict_dataset(minari_root):
    return random_episodes_dataset(gym.make(DICT_ID), "test/dictobs/random-v0", 2)


# --------------------------------------------------------------------------------------------
# Field values
# --------------------------------------------------------------------------------------------
def _hand_mc(rewards, gamma):
    out, g = [], 0.0
    for r in reversed(rewards):
        g = r + gamma * g
        out.append(g)
    return out[::-1]


def test_pendulum_fields_match_minari(pendulum_dataset):
    gamma = 0.9
    data = load_dataset("test/pendulum/random-v0", gamma=gamma)
    t = data.transitions
    episodes = list(pendulum_dataset.iterate_episodes())
    assert data.n_episodes == 3 and t.size == sum(len(ep) for ep in episodes) == 21
    float_fields = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "rtg")
    for f in float_fields + ("mc_return", "traj_return"):
        assert getattr(t, f).dtype == np.float32, f
    assert t.episode.dtype == np.int32

    row = 0
    for index, ep in enumerate(episodes):
        n = len(ep)
        rows = slice(row, row + n)
        np.testing.assert_allclose(t.obs[rows], ep.observations[:-1], rtol=1e-6)
        np.testing.assert_allclose(t.next_obs[rows], ep.observations[1:], rtol=1e-6)
        np.testing.assert_allclose(t.action[rows], ep.actions / 2.0, rtol=1e-6)  # Box [-2, 2]
        np.testing.assert_allclose(t.reward[rows], ep.rewards, rtol=1e-6)
        np.testing.assert_array_equal(t.episode[rows], index)
        np.testing.assert_array_equal(t.terminated[rows], 0.0)
        np.testing.assert_array_equal(t.truncated[rows], [0.0] * (n - 1) + [1.0])  # TimeLimit(7)
        rtg = [sum(ep.rewards[i:]) for i in range(n)]
        np.testing.assert_allclose(t.rtg[rows], rtg, rtol=1e-5)
        np.testing.assert_allclose(t.mc_return[rows], _hand_mc(list(ep.rewards), gamma), rtol=1e-5)
        np.testing.assert_allclose(t.traj_return[rows], sum(ep.rewards), rtol=1e-5)
        row += n
    # next_obs of a row is the obs of the following row inside an episode
    same_episode = t.episode[1:] == t.episode[:-1]
    np.testing.assert_array_equal(t.next_obs[:-1][same_episode], t.obs[1:][same_episode])

    assert data.ref_min_score == -1000.0 and data.ref_max_score == -100.0
    assert data.normalized_score(-550.0) == pytest.approx(50.0)
    np.testing.assert_allclose(data.normalized_score(np.array([-1000.0, -100.0])), [0.0, 100.0])
    np.testing.assert_array_equal(data.obs_mean, 0.0)
    np.testing.assert_array_equal(data.obs_std, 1.0)
    assert data.obs_layout == [((), 3)]

    env = data.make_env(seed=0)
    assert env.action_space.shape == (1,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3,) and obs.dtype == np.float32
    env.close()


def test_hand_computed_values_and_reward_scale(hand_dataset):
    gamma = 0.5
    data = load_dataset(HAND_ID, gamma=gamma, reward_scale=2.0, reward_bias=1.0)
    t = data.transitions
    assert t.size == 6 and data.n_episodes == 3
    np.testing.assert_array_equal(t.episode, [0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(t.obs, [[0, 0], [1, 1], [2, 2], [10, 10], [11, 11], [20, 20]])
    np.testing.assert_array_equal(t.next_obs, [[1, 1], [2, 2], [3, 3], [11, 11], [12, 12], [21, 21]])
    # reward' = 2 r + 1
    np.testing.assert_allclose(t.reward, [3, 5, 7, 21, -5, -1])
    np.testing.assert_array_equal(t.terminated, [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(t.truncated, [0, 0, 0, 0, 1, 0])
    # rtg / traj_return on the raw reward
    np.testing.assert_allclose(t.rtg, [6, 5, 3, 7, -3, -1])
    np.testing.assert_allclose(t.traj_return, [6, 6, 6, 7, 7, -1])
    # mc_return on the scaled reward, gamma 0.5, no bootstrap after the truncated step either
    np.testing.assert_allclose(t.mc_return, [3 + 2.5 + 1.75, 5 + 3.5, 7, 21 - 2.5, -5, -1])
    np.testing.assert_allclose(data.episode_returns(), [6, 7, -1])
    with pytest.raises(DatasetError, match="no reference scores"):
        data.normalized_score(1.0)


def test_a_run_configs_dataset_section_reaches_the_loader(hand_dataset):
    """load_dataset_from_config passes every loading option of the ``dataset`` section on: the same
    hand-computed values as above from a config (gamma 0.5, reward x 2 + 1), and obs standardised."""
    import ml_collections

    dc = ml_collections.ConfigDict(dict(id=HAND_ID, gamma=0.5, reward_scale=2.0, reward_bias=1.0, normalize_obs=False,
                                        reward="env", action_tolerance=1e-3, env_kwargs={}))
    t = load_dataset_from_config(dc).transitions
    np.testing.assert_allclose(t.reward, [3, 5, 7, 21, -5, -1])
    np.testing.assert_allclose(t.mc_return, [3 + 2.5 + 1.75, 5 + 3.5, 7, 21 - 2.5, -5, -1])
    dc.normalize_obs = True
    np.testing.assert_allclose(load_dataset_from_config(dc).transitions.obs, load_dataset(HAND_ID, normalize_obs=True).transitions.obs)
    assert not np.allclose(load_dataset_from_config(dc).transitions.obs, t.obs)
    dc.normalize_obs, dc.action_tolerance = False, 1e-4  # the second episode's 2.0005 is now out of bounds
    with pytest.raises(DatasetError, match="action_tolerance=0.0001"):
        load_dataset_from_config(dc)


def test_action_rescaling_non_symmetric_box(hand_dataset):
    data = load_dataset(HAND_ID)
    np.testing.assert_allclose(data.action_low, ASYM_LOW)
    np.testing.assert_allclose(data.action_high, ASYM_HIGH)
    expected = [[-1, -1], [1, 1], [0, 0], [-0.5, 0.5], [1, 1], [0.5, -0.5]]
    np.testing.assert_allclose(data.transitions.action, expected, atol=1e-6)
    assert np.all(np.abs(data.transitions.action) <= 1.0)  # the 2.0005 is clipped

    # The environment side maps [-1, 1] back onto the same box.
    env = data.make_env()
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    env.reset(seed=0)
    for scaled, raw in [([-1, -1], ASYM_LOW), ([1, 1], ASYM_HIGH), ([0, 0.5], [1.0, 2.0])]:
        env.step(np.asarray(scaled, np.float32))
        np.testing.assert_allclose(env.unwrapped.last_action, raw, atol=1e-6)
    env.close()


def test_normalisation_stats(hand_dataset):
    data = load_dataset(HAND_ID, normalize_obs=True)
    raw = np.array([0, 1, 2, 10, 11, 20], np.float64)
    mean, std = raw.mean(), raw.std() + OBS_STD_EPS
    np.testing.assert_allclose(data.obs_mean, [mean, mean], rtol=1e-6)
    np.testing.assert_allclose(data.obs_std, [std, std], rtol=1e-6)
    np.testing.assert_allclose(data.transitions.obs[:, 0], (raw - mean) / std, rtol=1e-5)
    raw_next = np.array([1, 2, 3, 11, 12, 21], np.float64)
    np.testing.assert_allclose(data.transitions.next_obs[:, 1], (raw_next - mean) / std, rtol=1e-5)
    # The dataset's environment applies the same standardisation.
    env = data.make_env()
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, (0.0 - mean) / std, rtol=1e-5)
    obs, *_ = env.step(np.zeros(2, np.float32))
    np.testing.assert_allclose(obs, (1.0 - mean) / std, rtol=1e-5)
    env.close()


def test_top_n_episodes(hand_dataset):
    data = load_dataset(HAND_ID)
    top1 = data.top_n_episodes(1)
    np.testing.assert_array_equal(top1.episode, [1, 1])
    top2 = data.top_n_episodes(2)
    np.testing.assert_array_equal(top2.episode, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(top2.obs, data.transitions.obs[:5])
    assert data.top_n_episodes(0).size == 0
    assert data.top_n_episodes(0).obs.shape == (0, 2)
    assert data.top_n_episodes(10).size == data.transitions.size


# --------------------------------------------------------------------------------------------
# Observation flattening
# --------------------------------------------------------------------------------------------
def test_dict_observation_flattening_order(dict_dataset):
    data = load_dataset("test/dictobs/random-v0")
    # Minari stores the Dict space with sorted keys; the dataset layout follows the stored space.
    assert list(data.observation_space.spaces) == ["alpha", "mid", "zeta"]
    assert data.obs_layout == SORTED_LAYOUT
    t = data.transitions
    assert t.obs.shape == (8, 8)
    np.testing.assert_array_equal(t.obs[0], _sorted_flat(0))
    np.testing.assert_array_equal(t.next_obs[0], _sorted_flat(1))
    np.testing.assert_array_equal(t.obs[5], _sorted_flat(1))  # episode 1, step 1

    # The dataset's env flattens online observations with the dataset's layout ...
    env = data.make_env()
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, _sorted_flat(0))
    obs, *_ = env.step(np.zeros(1, np.float32))
    np.testing.assert_array_equal(obs, _sorted_flat(1))
    env.close()

    # ... while a plain make_env uses the env's own key order (zeta, alpha, mid/y, mid/x).
    plain = envs.make_env(DICT_ID)
    assert envs.flatten_obs_keys(gym.make(DICT_ID).observation_space) == [
        (("zeta",), 2), (("alpha",), 1), (("mid", "y"), 4), (("mid", "x"), 1)
    ]
    obs, _ = plain.reset(seed=0)
    np.testing.assert_array_equal(obs, [100, 200, 0, 10, 11, 12, 13, 50])
    plain.close()


def test_flatten_observations_matches_gymnasium():
    space = spaces.Dict(
        OrderedDict(
            b=spaces.Box(-1, 1, (2, 3)),
            a=spaces.Tuple((spaces.Discrete(4, start=1), spaces.MultiBinary(3))),
            c=spaces.MultiDiscrete([2, 3]),
        )
    )
    space.seed(0)
    samples = [space.sample() for _ in range(5)]
    batch = {
        "b": np.stack([s["b"] for s in samples]),
        "a": (np.array([s["a"][0] for s in samples]), np.stack([s["a"][1] for s in samples])),
        "c": np.stack([s["c"] for s in samples]),
    }
    flat = flatten_observations(space, batch)
    expected = np.stack([spaces.flatten(space, s) for s in samples]).astype(np.float32)
    np.testing.assert_array_equal(flat, expected)
    assert envs.flat_obs_dim(space) == flat.shape[1] == spaces.flatdim(space)
    assert envs.flatten_obs_keys(space) == [(("b",), 6), (("a", 0), 4), (("a", 1), 3), (("c",), 5)]


# --------------------------------------------------------------------------------------------
# Return helpers
# --------------------------------------------------------------------------------------------
def test_return_helpers_against_loops():
    rng = np.random.default_rng(0)
    lengths = [5, 1, 12, 3]
    episode = np.repeat(np.arange(len(lengths)), lengths)
    rewards = rng.normal(size=episode.size)
    mc = discounted_returns(rewards, episode, 0.97)
    rtg = returns_to_go(rewards, episode)
    start = 0
    for n in lengths:
        r = list(rewards[start:start + n])
        np.testing.assert_allclose(mc[start:start + n], _hand_mc(r, 0.97))
        np.testing.assert_allclose(rtg[start:start + n], [sum(r[i:]) for i in range(n)])
        start += n


# --------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------
def test_make_env_rejects_discrete_actions():
    with pytest.raises(ValueError, match="CartPole-v1.*Box"):
        envs.make_env("CartPole-v1")


def test_vector_env_same_step_autoreset_and_seeds():
    venv = envs.make_vector_env("Pendulum-v1", 2, seeds=3, max_episode_steps=3)
    assert venv.single_action_space.low.tolist() == [-1.0]
    obs_a, _ = envs.reset_vector_env(venv, [1, 2])
    obs_b, _ = envs.reset_vector_env(venv, [1, 2])
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.shape == (2, 3) and obs_a.dtype == np.float32
    assert not np.array_equal(obs_a[0], obs_a[1])
    for step in range(3):
        obs, _, terminated, truncated, infos = venv.step(np.zeros((2, 1), np.float32))
    assert truncated.all() and not terminated.any()
    assert infos["_final_obs"].all()
    final = np.stack(infos["final_obs"])
    assert final.shape == (2, 3) and not np.array_equal(final, obs)  # obs is already reset
    venv.close()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
def test_unknown_dataset_id_lists_local_ones(hand_dataset):
    assert HAND_ID in list_local_datasets()
    with pytest.raises(DatasetError) as err:
        load_dataset("test/nothing/here-v0")
    msg = str(err.value)
    assert "test/nothing/here-v0" in msg and HAND_ID in msg
    assert "minari download test/nothing/here-v0" in msg
    assert "python experiments/make_dataset.py --env=" in msg


def test_dataset_without_env_spec(minari_root):
    eps = [dict(obs=[[0.0], [1.0]], actions=[[0.5]], rewards=[1.0], term=[1], trunc=[0])]
    box = spaces.Box(-1.0, 1.0, (1,), np.float32)
    _buffer_dataset("test/noenv/tiny-v0", eps, observation_space=box, action_space=box)
    data = load_dataset("test/noenv/tiny-v0")
    assert data.env_spec is None and data.transitions.size == 1
    with pytest.raises(DatasetError, match="no environment spec"):
        data.make_env()


def _hand_copy():
    """A float64 copy of HAND_EPISODES to corrupt."""
    return [{k: np.array(v, np.float64) for k, v in ep.items()} for ep in HAND_EPISODES]


def test_nan_reward_is_reported(minari_root):
    episodes = _hand_copy()
    episodes[1]["rewards"][1] = np.nan
    _buffer_dataset("test/bad/nanreward-v0", episodes, env=ASYM_ID)
    with pytest.raises(DatasetError, match=r"'rewards' contains 1 non-finite.*episode 1, step 1"):
        load_dataset("test/bad/nanreward-v0")


def test_out_of_range_actions_are_reported(minari_root):
    episodes = _hand_copy()
    episodes[0]["actions"][1, 0] = 2.5  # bounds [0, 2]
    episodes[2]["actions"][0, 1] = 3.2  # bounds [-1, 3], less bad
    _buffer_dataset("test/bad/actions-v0", episodes, env=ASYM_ID)
    with pytest.raises(DatasetError) as err:
        load_dataset("test/bad/actions-v0")
    msg = str(err.value)
    assert "2 action values in 2 transitions" in msg
    assert "worst value 2.5 in dimension 0 (bounds [0, 2]) at episode 0, step 1" in msg
    # a looser tolerance accepts them (and clips)
    data = load_dataset("test/bad/actions-v0", action_tolerance=1.0)
    assert data.transitions.action.max() == 1.0


def test_wrong_observation_shape_is_reported(minari_root):
    episodes = [
        dict(obs=np.zeros((3, 4)), actions=np.ones((2, 2)), rewards=[0.0, 0.0], term=[0, 1], trunc=[0, 0])
    ]
    _buffer_dataset("test/bad/obsshape-v0", episodes, env=ASYM_ID)  # env obs space is Box(2)
    with pytest.raises(DatasetError, match=r"episode 0.*shape \(4,\).*observation space shape \(2,\)"):
        load_dataset("test/bad/obsshape-v0")


def test_validate_transitions_directly():
    box_obs = spaces.Box(-np.inf, np.inf, (3,))
    box_act = spaces.Box(-1.0, 1.0, (2,))
    n = 6
    good = dict(
        obs=np.zeros((n, 3)),
        next_obs=np.zeros((n, 3)),
        actions=np.zeros((n, 2)),
        rewards=np.zeros(n),
        episode=np.array([0, 0, 0, 1, 1, 1]),
        step=np.array([0, 1, 2, 0, 1, 2]),
    )
    validate_transitions(**good, observation_space=box_obs, action_space=box_act)

    bad = dict(good, obs=good["obs"].copy())
    bad["obs"][4, 1] = np.inf
    bad["obs"][5, :] = np.nan
    expected = r"'obs' contains 4 non-finite values .* in 2 transitions; first at episode 1, step 1, row 4"
    with pytest.raises(DatasetError, match=expected):
        validate_transitions(**bad, observation_space=box_obs, action_space=box_act, source="mydata")

    bad = dict(good, actions=good["actions"].copy())
    bad["actions"][2, 1] = np.nan
    with pytest.raises(DatasetError, match=r"'actions' contains 1 non-finite.*episode 0, step 2"):
        validate_transitions(**bad)

    bad = dict(good, actions=good["actions"].copy())
    bad["actions"][3, 1] = -1.0005  # within the default tolerance
    validate_transitions(**bad, action_space=box_act)
    bad["actions"][3, 1] = -1.5
    expected = r"worst value -1.5 in dimension 1 \(bounds \[-1, 1\]\) at episode 1, step 0"
    with pytest.raises(DatasetError, match=expected):
        validate_transitions(**bad, action_space=box_act)

    with pytest.raises(DatasetError, match=r"obs has per-transition shape \(4,\).*flattens to shape \(3,\)"):
        validate_transitions(**dict(good, obs=np.zeros((n, 4))), observation_space=box_obs)
    with pytest.raises(DatasetError, match=r"actions have per-transition shape \(3,\).*has shape \(2,\)"):
        validate_transitions(**dict(good, actions=np.zeros((n, 3))), action_space=box_act)
    with pytest.raises(DatasetError, match="'next_obs' has shape"):
        validate_transitions(**dict(good, next_obs=np.zeros((n - 1, 3))))
