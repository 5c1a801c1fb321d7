"""A learner written outside the library that breaks the protocol the training loops rely on
(``smac_jax/learners/CONTRIBUTING.md``) stops with one line naming it: an update that does not
advance ``state.step``, a metric that is not one number, a trained group without an optimiser, a
TD3+BC actor loss that ignores the scheduled BC weight, a swept field that cannot vary per lane.
Also the messages that name what differs: a resumed run's changed config fields, a hand-over's
mismatched parameter, every non-finite metric."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from smac_jax.errors import ConfigError, DivergenceError, ProtocolError, TransferError
from smac_jax.learners import make_learner, td3bc
from smac_jax.learners.base import REGISTRY, register
from smac_jax.learners.handover import check_same_structure
from smac_jax.learners.sac import SAC
from smac_jax.learners.swept import Swept
from smac_jax.training import phases, pipeline
from smac_jax.training.steps import make_offline_step
from smac_jax.types import Transitions

OBS, ACT = 3, 1


class _NoStep(SAC):
    """SAC whose update forgets to advance ``state.step``."""

    def update(self, state, batch, key):
        new, info = super().update(state, batch, key)
        return new.replace(step=state.step), info


class _VectorMetric(SAC):
    def update(self, state, batch, key):
        new, info = super().update(state, batch, key)
        return new, {**info, "td_error": batch.reward * 2.0}


class _NoOptimiser(SAC):
    """Trains an extra parameter group that ``lr_fields`` does not name."""

    def init_params(self, key):
        return {**super().init_params(key), "q_bias": jnp.zeros(())}

    def update(self, state, batch, key):
        loss = lambda p, b, k, c: (jnp.square(p["q_bias"] - 1.0), {})  # noqa: E731
        params, opt, _ = self.grad_step("q_bias", loss, state.params, state.opt_state, batch, key)
        return state.replace(params=params, opt_state=opt, step=state.step + 1), {}


class _Branchy(SAC):
    """Branches in Python on a float hyperparameter (so it cannot vary per lane)."""

    def update(self, state, batch, key):
        if self.config.tau > 0.01:
            return super().update(state, batch, key)
        return super().update(state, batch, key)


def _abstract(learner, n_seeds=2, n_data=64):
    key = jax.random.PRNGKey(0)
    states = jax.eval_shape(jax.vmap(learner.init), jax.random.split(key, n_seeds))
    data = jax.eval_shape(lambda k: Transitions.random(k, n_data, OBS, ACT), key)
    return states, data, jax.random.split(key, n_seeds)


def _learner(cls, **config):
    return cls(make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8), "batch_size": 8, **config}).config, OBS, ACT)


def test_an_update_that_does_not_advance_step_stops_the_run(make_tiny_config, tmp_path):
    register("test_protocol_nostep")(_NoStep)  # registered for this test only (other files list the registry)
    try:
        cfg = make_tiny_config(offline="test_protocol_nostep", **{"offline.steps": 50, "offline.ckpt_every": 50})
        with pytest.raises(ProtocolError, match=r"^offline learner 'test_protocol_nostep': state.step is \[0, 0\] "
                                                r"at offline step 50, expected \[50, 50\]: its update must return"):
            pipeline.run(cfg, str(tmp_path / "run"), progress=False)
    finally:
        REGISTRY.pop("test_protocol_nostep", None)


def test_the_update_count_check_names_lanes_compactly():
    learner = make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8)})
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 12))
    got, metrics = phases.fetch_chunk(states, {"critic_loss": jnp.ones(12)})
    assert isinstance(metrics["critic_loss"], np.ndarray) and got.shape == (12,)
    phases.check_update_counts(got, np.zeros(12, int), "online", learner, 0)  # as initialised: no error
    with pytest.raises(ProtocolError, match=r"state.step is \[0\] \(over 12 lanes\) at online step 40, expected \[20\]"):
        phases.check_update_counts(got, np.full(12, 20), "online", learner, 40)


@pytest.mark.parametrize("cls, match", [
    (_VectorMetric, r"update returned metric\(s\) that are not one number per update \(shapes \{'td_error': \(8,\)\}\)"),
    (_NoOptimiser, r"parameter group\(s\) \['q_bias'\] have no optimiser: add each to _NoOptimiser.lr_fields"),
])
def test_an_update_breaking_the_protocol_is_named_when_traced(cls, match):
    learner = _learner(cls)
    with pytest.raises(ProtocolError, match=match):
        jax.eval_shape(make_offline_step(learner, 2), *_abstract(learner), 0)


def test_a_td3bc_actor_loss_that_ignores_the_scheduled_weight_is_named():
    def own_loss(params, batch, key, config):  # reads no bc_weight
        loss, info = td3bc.actor_loss({k: v for k, v in params.items() if k != "bc_weight"}, batch, key, config)
        return loss, {k: v for k, v in info.items() if k != "bc_weight"}

    class Own(td3bc.TD3BC):
        actor_loss_fn = staticmethod(own_loss)

    base = make_learner("td3bc", OBS, ACT, {"hidden_dims": (8, 8), "batch_size": 8, "bc_decay": "linear"})
    learner = Own(base.config, OBS, ACT)
    states, data, keys = _abstract(learner)
    with pytest.raises(ProtocolError, match=r"bc_decay='linear' schedules the BC weight, but its actor loss reports "
                                            "no 'bc_weight' metric"):
        jax.eval_shape(make_offline_step(learner, 2), states, data, keys, 0)
    plain = td3bc.TD3BC(base.config, OBS, ACT)  # the library's own loss reads and reports it
    jax.eval_shape(make_offline_step(plain, 2), *_abstract(plain), 0)


@pytest.mark.parametrize("values, match", [
    ({"num_critics": [2, 3]}, r"^Swept.grid: num_critics is an integer \(a size, count or period\): it shapes"),
    ({"no_such_field": [1.0, 2.0]}, r"^Swept.grid: 'no_such_field' is not a hyperparameter of learner 'sac'"),
    ({"tau": [0.005, 0.05]}, r"^Swept.grid: tau cannot vary within one program: learner 'sac' uses its value to "
                             r"build its update program"),
])
def test_swept_grid_refuses_what_cannot_vary_per_lane(values, match):
    learner = _learner(_Branchy) if "tau" in values else make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8),
                                                                                        "batch_size": 8})
    with pytest.raises(ConfigError, match=match):
        Swept.grid(learner, values, 2)
    plain = make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8), "batch_size": 8})
    assert Swept.grid(plain, {"critic_lr": [3e-4, 1e-3]}, 2).n_lanes == 4
    # a field only a hand-over reads is the caller's to use: not refused here
    assert Swept.grid(plain, {"transfer_log_std_init": [-1.0, -2.0]}, 2).n_lanes == 4


def test_resume_with_another_config_names_the_changed_fields(make_tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    cfg = make_tiny_config()
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True, default=str)
    pipeline.check_start(cfg, workdir, resume=True)  # the same config: no error
    changed = make_tiny_config(**{"online.steps": 800, "offline.agent.critic_lr": 1e-3})
    with pytest.raises(ConfigError, match=r"holds a different config than the one given \(offline.agent.critic_lr: "
                                          r"0.0003 -> 0.001; online.steps: 120 -> 800\); resume with the run's config"):
        pipeline.check_start(changed, workdir, resume=True)


def test_a_handover_shape_mismatch_names_the_parameter():
    small = {"params": {"Dense_0": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)}}}
    wide = {"params": {"Dense_0": {"kernel": jnp.zeros((3, 8)), "bias": jnp.zeros(8)}}}
    with pytest.raises(TransferError, match=r"^sac -> td3: parameter group 'critic' differs in shape: "
                                            r"\['params'\]\['Dense_0'\]\['bias'\]: td3 \(4,\), sac \(8,\); "
                                            r"\['params'\]\['Dense_0'\]\['kernel'\]: td3 \(3, 4\), sac \(3, 8\)\. Use"):
        check_same_structure(small, wide, "critic", "sac", "td3")


def test_a_divergence_names_every_non_finite_metric():
    learner = make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8)})
    metrics = {"actor_loss": np.array([np.nan, 1.0]), "critic_loss": np.array([np.inf, 2.0]), "q": np.ones(2)}
    with pytest.raises(DivergenceError, match=r"metric 'actor_loss' is not finite at step 7 for seed index\(es\) "
                                              r"\[0\] \(values \[nan, 1.0\]\) \(also not finite: 'critic_loss'\)\. "):
        phases.check_finite(metrics, "offline", learner, 7)


# -- mistakes of a learner of one's own, named before the run writes its workdir ----------------
class _TracedIf(SAC):
    """Branches in Python on a traced value."""

    def update(self, state, batch, key):
        if batch.reward.mean() > 0:  # the mistake: a traced value in an if
            return super().update(state, batch, key)
        return super().update(state, batch, key)


class _UndeclaredField(SAC):
    """Reads a config field its default_config lacks (by item access, as a dict)."""

    def update(self, state, batch, key):
        new, info = super().update(state, batch, key)
        return new, {**info, "w": jnp.float32(self.config["td_weight"])}


def _phase_only_td3():
    from smac_jax.learners.td3 import TD3

    class PhaseOnly(TD3):
        """Overrides update_phase only, with a metric update does not report."""

        def update_phase(self, state, batch, key, phase):
            new, info = super().update_phase(state, batch, key, phase)
            return new, {**info, "my_marker": jnp.float32(phase)}

    return PhaseOnly


def _needs_value():
    class NeedsValue(SAC):
        """A transfer of its own that reads the source's value network."""

        def transfer(self, key, src_state, src_learner):
            state = super().transfer(key, src_state, src_learner)
            return state.replace(params={**state.params, "critic": src_state.params["value"]})

    return NeedsValue


def _smac_reading_a_field():
    from smac_jax.learners.smac import SMAC

    class SmacField(SMAC):
        def update(self, state, batch, key):
            new, info = super().update(state, batch, key)
            return new, {**info, "w": jnp.float32(self.config.my_extra_weight)}

    return SmacField


@pytest.mark.parametrize("make_cls, role, error, match", [
    (lambda: _TracedIf, "offline", ProtocolError,
     r"^learner 'test_own': Python control flow on a traced value at test_protocol\.py:\d+ "
     r"\(`if batch\.reward\.mean\(\) > 0:.*`\): its update is traced"),
    (lambda: _UndeclaredField, "offline", ConfigError, r"td_weight"),
    (_phase_only_td3, "offline", ProtocolError,
     r"^learner 'test_own': update_phase and update return metrics \['my_marker'\] only from update_phase and \[\] "
     r"only from update: the phases"),
    (_needs_value, "online", TransferError,
     r"^sac -> test_own: hand-over failed: it reads 'value', which sac's state lacks \(its parameter groups: actor, "
     r"critic, log_temp, target_critic\)"),
    (_smac_reading_a_field, "offline", ConfigError,  # before its score model is fitted (a stand-in is traced)
     r"^learner 'test_own': .*my_extra_weight"),
])
def test_a_learner_of_ones_own_is_checked_before_anything_is_written_or_fitted(
        make_tiny_config, pendulum_dataset_id, tmp_path, make_cls, role, error, match):
    from smac_jax.data.dataset import load_dataset_from_config

    register("test_own")(make_cls())
    try:
        learners = {"offline": "sac", "online": "sac", role: "test_own"}
        cfg = make_tiny_config(learners["offline"], learners["online"])
        cfg.unlock()
        for phase in ("offline", "online"):  # the built-in learner's section, as the task config made it
            cfg[phase].learner = learners[phase]
        dataset = load_dataset_from_config(cfg.dataset)
        with pytest.raises(error, match=match):
            pipeline.check_learners(cfg, dataset)
    finally:
        REGISTRY.pop("test_own", None)


def test_registration_mistakes_are_config_errors():
    class Taken(SAC):
        pass

    with pytest.raises(ConfigError, match=r"^learner name 'sac' is taken by smac_jax.learners.sac.SAC; .*Taken needs"):
        register("sac")(Taken)

    class BadLr(SAC):
        lr_fields = {"actor": "actor_lr", "critic": "critc_lr", "log_temp": "temp_lr"}

    with pytest.raises(ConfigError, match=r"^learner 'test_badlr': lr_fields names critic: 'critc_lr', not a field of .*"
                                          r"BadLr.default_config\(\)"):
        register("test_badlr")(BadLr)
    assert "test_badlr" not in REGISTRY

    class BadGroup(SAC):
        lr_fields = {"actor": "actor_lr", "critc": "critic_lr", "log_temp": "temp_lr"}

    learner = _learner(BadGroup)
    with pytest.raises(ProtocolError, match=r"optimisers for parameter group\(s\) \['critc'\], which init_params does "
                                            r"not make .*BadGroup.lr_fields"):
        learner.init(jax.random.PRNGKey(0))


def test_a_checked_loss_names_a_missing_group_only_when_params_lacks_it():
    from smac_jax.errors import ArgumentError
    from smac_jax.learners import sac
    from smac_jax.learners.base import checked_loss

    learner = make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8)})
    params = learner.init(jax.random.PRNGKey(0)).params
    batch = Transitions.random(jax.random.PRNGKey(1), 4, OBS, ACT)

    @checked_loss
    def reads_value(params, batch, key, config):
        return params["value"], {}

    @checked_loss
    def metric_typo(params, batch, key, config):
        loss, info = sac.critic_loss(params, batch, key, config)
        return loss, {"q": info["q_mena"]}

    with pytest.raises(ArgumentError, match=r"^test_protocol.reads_value: params have no group 'value' \(they have "):
        reads_value(params, batch, jax.random.PRNGKey(2), learner.config)
    with pytest.raises(KeyError, match="q_mena") as caught:  # another dict's key: the KeyError as it is
        metric_typo(params, batch, jax.random.PRNGKey(2), learner.config)
    assert not isinstance(caught.value, ArgumentError)


@pytest.mark.parametrize("src, dst, line", [
    ("td3bc", "sac", "taken over: critic, target_critic; taken over and converted: actor; new: log_temp"),
    ("sac", "td3", "taken over: critic, target_critic; taken over and converted: actor, target_actor"),
    ("bc", "sac", "taken over: actor; new: critic, log_temp, target_critic"),
    ("iql", "samg_iql", "taken over: actor, critic, offline_value, target_critic, value; new: cvae, cvae_stats, guidance"),
    # ACA's critic R is built from SAC+ML's baseline Z (docs/aca.md); the offline Q-critic is dropped
    ("sacml", "aca", "taken over: actor, actor0, log_temp; taken over and converted: critic, target_critic; new: k"),
])
def test_the_run_log_says_what_the_hand_over_took_over(src, dst, line):
    from smac_jax.learners.handover import describe_transfer

    off, on = (make_learner(n, OBS, ACT, {"hidden_dims": (8, 8)}) for n in (src, dst))
    on.stand_in_models()
    state = off.init(jax.random.PRNGKey(0))
    assert describe_transfer(state.params, on.transfer(jax.random.PRNGKey(1), state, off).params) == line


def _as_if_trained(learner, keys):
    states = jax.vmap(learner.init)(keys)
    leaves, tree = jax.tree.flatten(states.params)  # every parameter moved, every moment and count too
    moved = [x + 0.01 * jax.random.normal(jax.random.PRNGKey(i), x.shape) for i, x in enumerate(leaves)]
    return states.replace(params=jax.tree.unflatten(tree, moved), opt_state=jax.tree.map(
        lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.integer) else x + 0.5, states.opt_state))


def test_kept_optimiser_states_go_with_the_parameters_they_belong_to():
    """transfer_reset_optimizer=False keeps a group's offline optimiser state only where the hand-over
    took its parameters over unchanged: ACA's critic is rebuilt from the baseline (the offline critic's
    moments would be another network's), its temperature restarts at its initial value."""
    same = lambda a, b: all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    for src, dst, carried, fresh in (("sac", "sac", ("actor", "critic", "log_temp"), ()),
                                     ("sacml", "aca", (), ("critic", "log_temp"))):
        off, on = (make_learner(n, OBS, ACT, {"hidden_dims": (8, 8)}) for n in (src, dst))
        trained = _as_if_trained(off, keys)
        handed = jax.vmap(lambda k, s: on.transfer(k, s, off))(keys, trained)
        kept = phases._carry_optimizer_state(handed, trained)
        for g in carried:
            assert same(kept.opt_state[g], trained.opt_state[g]), (src, dst, g)
        for g in fresh:  # same layout as the offline state, but not the same parameters: fresh moments
            assert jax.tree.structure(trained.opt_state[g]) == jax.tree.structure(handed.opt_state[g])
            assert same(kept.opt_state[g], handed.opt_state[g]) and not same(kept.opt_state[g], trained.opt_state[g])
