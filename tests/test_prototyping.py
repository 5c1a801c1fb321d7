"""What a prototyper's mistakes and extensions do: one-line errors for a loss's commonest mistakes
(before a run writes its workdir), a learner module named in $SMAC_JAX_LEARNERS, bounds on a
missing field refused, and a TD3 subclass's own ``update`` not bypassed by the offline loop."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest

from smac_jax import networks
from smac_jax.errors import ConfigError, ShapeError
from smac_jax.learners import make_learner, register, sac, td3bc
from smac_jax.learners.base import REGISTRY, at_least, get_learner_class
from smac_jax.training import pipeline
from smac_jax.training.steps import make_offline_step, unalias
from smac_jax.types import Transitions


def _batch(n=8, obs_dim=3, act_dim=1):
    z = lambda *s: jnp.zeros(s)
    return Transitions(obs=z(n, obs_dim), action=z(n, act_dim), reward=z(n), next_obs=z(n, obs_dim),
                       terminated=z(n), truncated=z(n), episode=jnp.zeros(n, jnp.int32), rtg=z(n),
                       traj_return=z(n), mc_return=z(n))


def _missing_field_loss(params, batch, key, config):
    loss, info = sac.critic_loss(params, batch, key, config)
    return loss * config.q_penalty, info


def _vector_loss(params, batch, key, config):
    y = sac.td_target(params, batch, key, config)
    q = networks.critic_net(config).apply(params["critic"], batch.obs, batch.action)
    return ((q - y[None]) ** 2).mean(0), {}


class _SACMissing(sac.SAC):
    critic_loss_fn = staticmethod(_missing_field_loss)


class _SACVector(sac.SAC):
    critic_loss_fn = staticmethod(_vector_loss)


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """This file's learners, registered for its tests only (other files iterate over every learner)."""
    names = {"_test_sac_missing_field": _SACMissing, "_test_sac_vector_loss": _SACVector,
             "_test_td3bc_no_bc": _TD3BCNoBC}
    for name, cls in names.items():
        register(name)(cls)
    yield
    for name in (*names, "_test_env_learner"):
        REGISTRY.pop(name, None)


@pytest.mark.parametrize("name, error, words", [
    ("_test_sac_missing_field", ConfigError, "reads config.q_penalty"),
    ("_test_sac_vector_loss", ShapeError, "loss of shape (8,)"),
])
def test_loss_mistakes_are_library_errors(name, error, words):
    learner = make_learner(name, 3, 1, {"hidden_dims": (8,), "batch_size": 8})
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        jax.eval_shape(learner.update, learner.init(jax.random.key(0)), _batch(), jax.random.key(1))


@pytest.mark.parametrize("name", ["_test_sac_missing_field", "_test_sac_vector_loss"])
def test_loss_mistakes_stop_before_the_workdir(make_tiny_config, tmp_path, name):
    workdir = str(tmp_path / "run")
    with pytest.raises((ConfigError, ShapeError)):
        pipeline.run(make_tiny_config(offline=name), workdir, progress=False)
    assert not os.path.exists(workdir)


def test_bounds_on_a_field_not_in_the_config_are_refused():
    with pytest.raises(ConfigError, match="q_penalti"):
        @register("_test_typo_bounds")
        class _Typo(sac.SAC):
            bounds = {"q_penalti": at_least(0)}

            @classmethod
            def default_config(cls):
                cfg = super().default_config()
                cfg.q_penalty = 1e-3
                return cfg


class _TD3BCNoBC(td3bc.TD3BC):
    """Overrides only ``update`` (BC weight 0), as a schedule of one's own would."""

    def update(self, state, batch, key):
        state, info = super(td3bc.TD3BC, self).update(state.replace(params={**state.params, "bc_weight": 0.0}), batch, key)
        return state.replace(params={k: v for k, v in state.params.items() if k != "bc_weight"}), info


def test_offline_step_runs_a_subclass_update():
    learner = make_learner("_test_td3bc_no_bc", 3, 1, {"hidden_dims": (8,), "batch_size": 8})
    keys = jax.random.split(jax.random.key(0), 1)
    states = unalias(jax.vmap(learner.init)(keys))
    data = jax.tree.map(lambda x: jnp.concatenate([x, x + 1.0]) if x.dtype != jnp.int32 else jnp.concatenate([x, x]), _batch())
    _, metrics = make_offline_step(learner, n_updates=2)(states, data, keys, 0)
    assert float(metrics["bc_weight"][0]) == 0.0


def test_learner_modules_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "_my_proto_learners.py").write_text(
        "from smac_jax.learners import register, sac\n"
        "@register('_test_env_learner')\nclass Mine(sac.SAC):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="SMAC_JAX_LEARNERS"):
        get_learner_class("_test_env_learner")
    monkeypatch.setenv("SMAC_JAX_LEARNERS", "_my_proto_learners")
    assert get_learner_class("_test_env_learner").__name__ == "Mine"
    with pytest.raises(ConfigError, match="did you mean '_test_env_learner'"):
        get_learner_class("_test_env_learnr")
    monkeypatch.setenv("SMAC_JAX_LEARNERS", "_no_such_module_here")
    with pytest.raises(ConfigError, match="cannot import '_no_such_module_here'"):
        get_learner_class("_test_unknown")


def test_a_bc_schedule_of_ones_own_reaches_both_update_paths():
    """A TD3+BC subclass overriding ``bc_weight_at`` gets its weight in ``update`` and in the phased
    offline updates alike."""
    class Halved(td3bc.TD3BC):
        def bc_weight_at(self, step):
            return jnp.asarray(0.5, jnp.float32)

    register("_test_td3bc_halved")(Halved)
    try:
        learner = make_learner("_test_td3bc_halved", 3, 1, {"hidden_dims": (8,), "batch_size": 8})
        keys = jax.random.split(jax.random.key(0), 1)
        states = unalias(jax.vmap(learner.init)(keys))
        data = Transitions.random(jax.random.key(1), 64, 3, 1)
        _, metrics = make_offline_step(learner, n_updates=2)(states, data, keys, 0)
        assert float(metrics["bc_weight"][0]) == 0.5
        _, info = jax.jit(learner.update)(learner.init(jax.random.key(2)), Transitions.random(jax.random.key(3), 8, 3, 1),
                                          jax.random.key(4))
        assert float(info["bc_weight"]) == 0.5
    finally:
        REGISTRY.pop("_test_td3bc_halved", None)


SMALL = {"hidden_dims": (8, 8), "batch_size": 8}


@pytest.mark.parametrize("name, fn", [("cql", "critic_loss"), ("iql", "value_loss"), ("calql", "critic_loss")])
def test_a_notebooks_mistakes_calling_a_loss_are_one_line_errors(name, fn):
    """Each public loss, called by hand: a batch field of the wrong shape, a batch that is not a
    Transitions, another learner's params or config, a batch of another width: the library's own
    error naming what is wrong (before, CQL's and IQL's losses broadcast a (N, 1) reward into a
    JAX shape error, and other params gave Flax's or a bare KeyError)."""
    import importlib

    from smac_jax.errors import ArgumentError

    loss = getattr(importlib.import_module(f"smac_jax.learners.{name}"), fn)
    learner = make_learner(name, 3, 1, SMALL)
    params, key = learner.init(jax.random.PRNGKey(0)).params, jax.random.PRNGKey(1)
    batch = Transitions.random(jax.random.PRNGKey(2), 8, 3, 1)
    assert jnp.isfinite(loss(params, batch, key, learner.config)[0])
    with pytest.raises(ShapeError, match=rf"^{name}\.\w+: batch.reward has shape \(8, 1\); expected \(N,\)"):
        loss(params, batch.replace(reward=batch.reward[:, None]), key, learner.config)
    with pytest.raises(ArgumentError, match=rf"{name}\.\w+: batch must be a smac_jax.types.Transitions .* got dict"):
        loss(params, {"obs": batch.obs}, key, learner.config)
    with pytest.raises(ShapeError, match=r"params do not fit this loss and batch \(batch.obs 4 wide.*received "
                                         r"has shape \([34], 8\)"):
        loss(params, Transitions.random(jax.random.PRNGKey(2), 8, 4, 1), key, learner.config)
    other = make_learner("td3bc", 3, 1, SMALL)
    with pytest.raises(ArgumentError, match="another learner's params|params have no group"):
        loss(other.init(key).params, batch, key, learner.config)
    with pytest.raises(ConfigError, match=r"reads config\.\w+, which this config lacks: .*pass the config of the learner"):
        loss(params, batch, key, make_learner("sac", 3, 1, SMALL).config)
    # differentiable as before
    grads = jax.grad(lambda p: loss(p, batch, key, learner.config)[0])(params)
    assert jnp.isfinite(jax.flatten_util.ravel_pytree(grads["critic"])[0]).all()


def test_a_learners_config_is_read_only():
    """A learning rate set after the learner was made was ignored (its optimiser is built once) and
    a misspelt field was added silently: both are now an error that says how to get the setting."""
    learner = make_learner("cql", 3, 1, SMALL)
    for field, value in (("critic_lr", 0.5), ("cql_tmep", 0.1)):
        with pytest.raises(ConfigError, match=rf"config is read-only .* make_learner\(name, obs_dim, act_dim, "
                                              rf"\{{\*\*learner.config, '{field}': {value}\}}\)"):
            setattr(learner.config, field, value)
    assert learner.config.critic_lr == 3e-4 and "cql_tmep" not in learner.config
    again = make_learner("cql", 3, 1, {**learner.config, "critic_lr": 0.5})
    assert again.config.critic_lr == 0.5 and again.config.cql_alpha == learner.config.cql_alpha


def test_counts_given_as_floats_and_mismatched_analysis_inputs_are_one_line_errors():
    from smac_jax.data import replay
    from smac_jax.errors import ArgumentError
    from smac_jax.learners.swept import Swept
    from smac_jax.training.summary import transfer_drop

    learner = make_learner("sac", 3, 1, SMALL)
    data = Transitions.random(jax.random.PRNGKey(0), 16, 3, 1)
    with pytest.raises(ArgumentError, match=r"sample_transitions: batch_size must be an integer >= 1, got 64.0"):
        replay.sample_transitions(data, jax.random.PRNGKey(1), 64.0)
    with pytest.raises(ArgumentError, match=r"make_offline_step: n_updates must be an integer >= 1, got 50.0"):
        make_offline_step(learner, 50.0)
    with pytest.raises(ArgumentError, match=r"Swept.grid: n_seeds must be an integer >= 1, got 2.0"):
        Swept.grid(learner, {"critic_lr": [1e-4, 3e-4]}, n_seeds=2.0)
    with pytest.raises(ArgumentError, match=r"online_steps has shape \(3,\) and online_scores \(2,\)"):
        transfer_drop(50.0, [0, 30, 60], [40.0, 45.0], 300)
    assert transfer_drop(50.0, [0, 30, 60], [40.0, 45.0, 30.0], 300) == 10.0  # steps 0 and 30 in the window
