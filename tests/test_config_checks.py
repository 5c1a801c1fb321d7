"""Mistakes in configs, batches and hand-overs stop with one error naming the field, before any
training: learner hyperparameters out of range, misspelt run-config fields, an unknown learner,
batches and train states of the wrong shape, a learner that cannot take over a deterministic actor."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import load_o2o_config_module, tiny_config

from smac_jax.errors import ConfigError, ShapeError, TransferError
from smac_jax.learners import make_learner, sac
from smac_jax.learners.base import Bound, Learner, REGISTRY, above, at_least, count, learner_bounds, register
from smac_jax.training import pipeline
from smac_jax.training.evaluation import make_act_fn
from smac_jax.training.steps import make_offline_step
from smac_jax.types import Transitions

OBS, ACT, N = 3, 1, 8


@pytest.mark.parametrize("name, field, value, message", [
    ("cql", "cql_n_actions", 0, "cql_n_actions=0 must be an integer >= 1"),
    ("cql", "cql_alpha", -5.0, "cql_alpha=-5.0 must be a number >= 0"),
    ("cql", "cql_temp", 0.0, "cql_temp=0.0 must be a number > 0"),
    ("calql", "cql_temp", 0.0, "cql_temp=0.0 must be a number > 0"),  # inherited from CQL
    ("td3", "policy_delay", 0, "policy_delay=0 must be an integer >= 1"),
    ("td3bc", "policy_delay", 0, "policy_delay=0 must be an integer >= 1"),
    ("td3bc", "alpha", -2.5, "alpha=-2.5 must be a number >= 0"),
    ("iql", "beta", -1.0, "beta=-1.0 must be a number >= 0"),
    ("awac", "awac_lambda", 0.0, "awac_lambda=0.0 must be a number > 0"),
    ("smac", "policy_prob", 2.0, r"policy_prob=2.0 must be a number in \[0, 1\]"),
    ("smac", "kappa", -1.0, "kappa=-1.0 must be a number >= 0"),
    ("sac", "init_temperature", 0.0, "init_temperature=0.0 must be a number > 0"),
    ("bc", "action_clip_eps", 0.0, r"action_clip_eps=0.0 must be a number in \(0, 1\)"),
    ("iql", "expectile", 1.0, r"expectile=1.0 must be a number in \(0, 1\)"),
    ("samg_iql", "p_threshold", 1.5, r"p_threshold=1.5 must be a number in \[0, 1\]"),
    ("samg_cql", "cql_n_actions", 0, "cql_n_actions=0 must be an integer >= 1"),  # CQL's, through the SAMG class
    ("td3", "policy_delay", 1.5, "policy_delay=1.5 has the wrong type; the default is 2"),
])
def test_out_of_range_hyperparameters_are_named(name, field, value, message):
    with pytest.raises(ConfigError, match=f"learner '{name}': {message}"):
        make_learner(name, OBS, ACT, {field: value})


def test_bounds_accept_their_edges_and_numpy_scalars():
    make_learner("cql", OBS, ACT, {"cql_alpha": 0.0, "cql_n_actions": 1})
    make_learner("smac", OBS, ACT, {"policy_prob": 1.0, "sm_batch_size": 0})
    learner = make_learner("sac", OBS, ACT, {"batch_size": np.int64(64), "critic_lr": np.float32(1e-3)})
    assert learner.config.batch_size == 64 and isinstance(learner.config.batch_size, int)
    assert Bound(0, 1, lo_open=True).describe() == "must be a number in (0, 1]"
    assert count(0).holds(0) and not count(1).holds(0) and not above(0).holds(0.0) and at_least(0).holds(0.0)
    assert not at_least(0).holds(True) and not at_least(0).holds("1")


def test_a_learners_bounds_add_to_those_it_derives_from():
    assert {"cql_alpha", "init_temperature"} <= set(learner_bounds(REGISTRY["calql"]))
    assert "policy_delay" in learner_bounds(REGISTRY["td3bc"]) and "alpha" in learner_bounds(REGISTRY["td3bc"])
    assert "cql_alpha" not in learner_bounds(REGISTRY["sac"])


def test_the_task_config_is_locked_against_misspelt_fields():
    c = load_o2o_config_module().get_config("pendulum,sac,td3")
    c.online.learning_starts = 90  # existing fields change as before
    with pytest.raises(AttributeError, match="learing_starts"):
        c.online.learing_starts = 90
    with pytest.raises(AttributeError, match="n_seed"):
        c.n_seed = 5


@pytest.mark.parametrize("offline, overrides, match", [
    ("sac", {"offline.learner": "sacc"}, r"offline\.learner: unknown learner 'sacc'; available: .*smac"),
    ("sac", {"online.learner": "nope"}, r"online\.learner: unknown learner 'nope'"),
    ("sac", {"online.replay.init": "top_n", "online.replay.top_n": -1},
     r"online\.replay\.top_n must be >= 0 with online\.replay\.init='top_n', got -1"),
    ("smac", {"offline.agent.policy_prob": 1.5},
     r"offline\.agent: learner 'smac': policy_prob=1\.5 must be a number in \[0, 1\]"),
    # a learner's own cross-field rules (its __init__) come before any data is read, naming the section
    ("smac", {"offline.agent.sm_target": "bogus"}, r"^offline\.agent: sm_target must be one of"),
    ("td3bc", {"offline.agent.bc_decay": "bogus"}, r"^offline\.agent: td3bc: bc_decay must be one of"),
    ("cql", {"offline.agent.cql_clip_diff_min": 5.0, "offline.agent.cql_clip_diff_max": -5.0},
     r"^offline\.agent: cql: cql_clip_diff_min=5\.0 must not exceed cql_clip_diff_max=-5\.0$"),
    ("sac", {"offline.agent.optimizer": "muon", "offline.agent.muon_consistent_rms": -5.0},
     r"offline\.agent: learner 'sac': muon_consistent_rms=-5\.0 must be a finite number > 0"),
    ("sac", {"dataset.generate": True, "dataset.generate_kind": "bogus"}, r"^dataset\.generate_kind must be one of \('random', 'medium'"),
    ("sac", {"online.replay.init": "mix", "online.replay.mixing_ratio": 0.999},
     r"^online\.replay\.mixing_ratio=0\.999 takes round\(0\.999 x 32\) = 32 of the 32 rows .* none from the online"),
])
def test_run_config_mistakes_name_the_field(offline, overrides, match):
    with pytest.raises(ConfigError, match=match):
        pipeline.validate_config(tiny_config(offline=offline, **overrides))


def test_an_online_learners_own_rules_name_its_section():
    with pytest.raises(ConfigError, match=r"^online\.agent: aca: baseline_fit_rows must be >= 1, got -5$"):
        pipeline.validate_config(tiny_config(offline="sacml", online="aca", **{"online.agent.baseline_fit_rows": -5}))


def test_a_learner_gamma_other_than_the_datasets_is_refused_where_mc_returns_are_read():
    """dataset.gamma discounts the data's Monte-Carlo returns: Cal-QL's bound (either phase) and the
    offline learner's Q-against-return diagnostics. An online learner that never reads them may differ."""
    for offline, online, field, words in [
        ("sac", "sac", "offline.agent.gamma", "offline.agent.gamma=0.995 but dataset.gamma=0.99: .*the Q-against-return"),
        ("sac", "calql", "online.agent.gamma", "online.agent.gamma=0.995 but dataset.gamma=0.99: .*its lower bound"),
        ("sac", "samg_calql", "online.agent.gamma", "online.agent.gamma=0.995 .*its lower bound.*dataset.gamma=0.995 too"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{words}"):
            pipeline.validate_config(tiny_config(offline=offline, online=online, **{field: 0.995}))
        same = {"offline.agent.gamma": 0.995, "online.agent.gamma": 0.995, "dataset.gamma": 0.995}
        pipeline.validate_config(tiny_config(offline=offline, online=online, **same))
    pipeline.validate_config(tiny_config(offline="sac", online="td3", **{"online.agent.gamma": 0.995}))


def test_aca_presets_without_dataset_rows_take_top_n_zero():
    # docs/aca.md: the random and medium presets run with --config.online.replay.top_n=0 (an empty buffer)
    c = tiny_config(offline="sacml", online="aca", **{"online.agent.preset": "medium", "online.replay.top_n": 0})
    assert c.online.replay.init == "top_n"
    pipeline.validate_config(c)


def test_a_replay_capacity_beyond_memory_stops_before_training():
    t = _batch(n=100, obs=3, act=1)
    c = tiny_config(**{"online.replay.capacity": 1_000})  # 2 seeds x 1,000 rows x 14 float32: 112,000 bytes
    pipeline.check_replay_fits(c, t, memory_bytes=112_000)
    with pytest.raises(ConfigError, match=r"online\.replay\.capacity=1000: the online replay buffers \(2 x 1,000 rows"):
        pipeline.check_replay_fits(c, t, memory_bytes=111_999)
    c = tiny_config(**{"online.replay.capacity": 1_000, "online.replay.init": "full"})  # + the dataset's 100 rows
    with pytest.raises(ConfigError, match=r"2 x 1,100 rows"):
        pipeline.check_replay_fits(c, t, memory_bytes=112_000)


def _batch(n=N, obs=OBS, act=ACT, reward_shape=None):
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    return Transitions(obs=z(n, obs), action=z(n, act), reward=z(*(reward_shape or (n,))), next_obs=z(n, obs),
                       terminated=z(n), truncated=z(n), episode=jnp.zeros((n,), jnp.int32), rtg=z(n),
                       mc_return=z(n), traj_return=z(n))


def test_a_batch_of_the_wrong_shape_is_named_by_its_field():
    learner = make_learner("sac", OBS, ACT, {"hidden_dims": (8,), "batch_size": 4})
    state = learner.init(jax.random.PRNGKey(0))
    # a (N, 1) reward would broadcast the TD target to (N, N) without a word
    with pytest.raises(ShapeError, match=r"batch\.reward has shape \(8, 1\); expected \(N,\) with N = 8"):
        sac.critic_loss(state.params, _batch(reward_shape=(N, 1)), jax.random.PRNGKey(1), learner.config)
    loss, _ = sac.critic_loss(state.params, _batch(), jax.random.PRNGKey(1), learner.config)
    assert np.isfinite(loss)
    # the offline program checks the data against the learner's sizes when it is traced
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    step = make_offline_step(learner, 2)
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    with pytest.raises(ShapeError, match=r"data\.obs has shape \(8, 5\); expected \(N, 3\)"):
        step(states, _batch(obs=5), keys, 0)


def test_a_state_without_its_seed_axis_is_one_clear_error():
    learner = make_learner("sac", OBS, ACT, {"hidden_dims": (8,), "batch_size": 4})
    act = make_act_fn(learner)
    with pytest.raises(ShapeError, match="no leading seed axis"):
        act(learner.init(jax.random.PRNGKey(0)), jnp.zeros((5, OBS)))
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    with pytest.raises(ShapeError, match=r"disagree on the number of seeds \(leading axis sizes \[2, 5\]\)"):
        act(states, jnp.zeros((5, OBS)))
    assert act(states, jnp.zeros((2, 5, OBS))).shape == (2, 5, ACT)


def test_a_gaussian_learner_without_transfer_log_std_init_takes_over_gaussian_actors_only():
    @register("test_plain_gaussian")
    class Plain(sac.SAC):
        @classmethod
        def default_config(cls) -> ml_collections.ConfigDict:
            cfg = super().default_config()
            del cfg["transfer_log_std_init"]
            return cfg

    try:
        small = {"hidden_dims": (8,), "batch_size": 4}
        dst = make_learner("test_plain_gaussian", OBS, ACT, small)
        key = jax.random.PRNGKey(0)
        for src_name in ("sac", "test_plain_gaussian"):  # Gaussian -> Gaussian: the field is not needed
            src = make_learner(src_name, OBS, ACT, small)
            moved = dst.transfer(key, src.init(key), src)
            np.testing.assert_array_equal(jax.tree.leaves(moved.params["actor"])[0],
                                          jax.tree.leaves(src.init(key).params["actor"])[0])
        td3 = make_learner("td3", OBS, ACT, small)
        with pytest.raises(TransferError, match="td3 -> test_plain_gaussian: .* no config field transfer_log_std_init"):
            dst.transfer(key, td3.init(key), td3)
    finally:
        REGISTRY.pop("test_plain_gaussian", None)
    assert issubclass(Plain, Learner)


def test_dataset_loading_values_are_checked(pendulum_dataset_id):
    """reward_scale / reward_bias / action_tolerance of a run config and of load_dataset: a
    non-finite or out-of-range value is named before any data is read (NaN rewards used to surface
    as a learner's divergence); the run config's action_tolerance reaches the loader."""
    import ml_collections

    from smac_jax.data.dataset import load_dataset, load_dataset_from_config
    from smac_jax.errors import ConfigError, DatasetError
    from smac_jax.training.pipeline import validate_config

    for field, value, msg in (("reward_scale", float("nan"), "dataset.reward_scale must be a finite number, got nan"),
                              ("reward_bias", float("inf"), "dataset.reward_bias must be a finite number, got inf"),
                              ("action_tolerance", -1.0, "dataset.action_tolerance must be a finite number >= 0")):
        cfg = tiny_config(pendulum_dataset_id)
        cfg.dataset[field] = value
        with pytest.raises(ConfigError, match=re.escape(msg)):
            validate_config(cfg)
    with pytest.raises(DatasetError, match=r"reward_scale must be a finite number, got nan"):
        load_dataset(pendulum_dataset_id, reward_scale=float("nan"))
    with pytest.raises(DatasetError, match=r"gamma must be in \(0, 1\], got 5.0"):
        load_dataset(pendulum_dataset_id, gamma=5.0)
    dc = ml_collections.ConfigDict(dict(id=pendulum_dataset_id, normalize_obs=False, reward_scale=1.0, reward_bias=0.0,
                                        gamma=0.99, action_tolerance=-0.5))
    with pytest.raises(DatasetError, match="action_tolerance must be >= 0, got -0.5"):
        load_dataset_from_config(dc)


@pytest.mark.parametrize("name, overrides, words", [
    ("smac", {"score_config": {"steps": 0}}, "score_config.steps=0 must be an integer >= 1"),
    ("smac", {"score_config": {"T": 0}}, "score_config.T=0 must be an integer >= 1"),
    ("smac", {"score_config": {"lr": float("nan")}}, "score_config.lr=nan must be a number > 0"),
    ("smac", {"score_config": {"score_sign": "bogus"}}, "score_config.score_sign='bogus' must be one of"),
    ("smac", {"score_config": {"beta_max": 0.05}}, "score_config.beta_max=0.05 must be above"),
    ("samg_sac", {"cvae": {"steps": 0}}, "cvae.steps=0 must be an integer >= 1"),
    ("samg_sac", {"cvae": {"hidden_dims": "abc"}}, "cvae.hidden_dims='abc' has the wrong type"),
    ("samg_cql", {"cvae": {"lr": -1.0}}, "cvae.lr=-1.0 must be a number > 0"),
    ("sac", {"log_std_max": float("inf")}, "log_std_max=inf must be finite"),
    ("sac", {"target_entropy": float("nan")}, "target_entropy=nan must be finite"),
    ("cql", {"cql_clip_diff_max": float("nan")}, "cql_clip_diff_max=nan must be finite"),
])
def test_nested_sections_and_non_finite_values_are_refused(name, overrides, words):
    from smac_jax.learners import make_learner

    with pytest.raises(ConfigError, match=re.escape(words)):
        make_learner(name, 3, 1, overrides)


def test_partial_nested_overrides_keep_the_other_defaults():
    from smac_jax.learners import make_learner

    smac = make_learner("smac", 3, 1, {"score_config": {"steps": 10}})
    assert (smac.config.score_config.steps, smac.config.score_config.T) == (10, 5)
    assert make_learner("cql", 3, 1, {"cql_clip_diff_max": float("inf")}).config.cql_clip_diff_max == float("inf")


def test_a_learner_swapped_by_override_says_where_learners_are_chosen(make_tiny_config):
    from smac_jax.training import pipeline

    config = make_tiny_config(**{"online.learner": "iql"})  # the agent section is still SAC's
    with pytest.raises(ConfigError, match=r"name it in --config=configs/o2o.py:TASK,OFFLINE,ONLINE"):
        pipeline.validate_config(config)


def test_a_hand_over_method_as_the_offline_learner_is_warned_about(make_tiny_config, tmp_path, monkeypatch, capsys):
    """SAMG's guidance and ACA's alignment start at a hand-over: as offline learners they are not the
    method (SAMG trains as its base learner after fitting a C-VAE it never uses)."""
    from smac_jax.learners import available_learners, get_learner_class

    noted = sorted(n for n in available_learners() if get_learner_class(n).offline_note)
    assert noted == ["aca", "samg_awac", "samg_calql", "samg_cql", "samg_iql", "samg_sac"]

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(pipeline, "_write_workdir", stop)  # every check passed: stop before writing
    with pytest.raises(Stop):
        pipeline.run(make_tiny_config("samg_sac", "sac"), str(tmp_path / "run"), progress=False)
    assert ("warning: offline.learner='samg_sac': its guidance starts at the hand-over: offline it trains exactly "
            "as sac, after fitting a C-VAE it does not use; pre-train with sac instead") in capsys.readouterr().out
    with pytest.raises(Stop):
        pipeline.run(make_tiny_config("sac", "samg_sac"), str(tmp_path / "run"), progress=False)
    assert "warning: offline.learner" not in capsys.readouterr().out
