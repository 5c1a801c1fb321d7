"""The update machinery every learner shares, checked from outside: each parameter group's first
Adam step is its own configured learning rate, targets are the Polyak average of the updated
networks, online minibatches mix dataset rows at the configured ratio, and a swept TD3's phased
offline step uses each lane's own values."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from smac_jax.data import replay
from smac_jax.learners import make_learner
from smac_jax.learners.swept import Swept
from smac_jax.training.online import make_online_step
from smac_jax.training.steps import make_offline_step, unalias
from smac_jax.types import Transitions


OBS, ACT, B = 3, 2, 16
TINY = dict(hidden_dims=(8, 8), batch_size=B, tau=0.1)
LRS = dict(actor_lr=1e-3, critic_lr=2e-3, temp_lr=3e-3, value_lr=4e-3, baseline_lr=5e-3,
           cql_alpha_prime_lr=6e-3, alpha_lr=7e-3)


def batch():
    b = Transitions.random(jax.random.PRNGKey(0), B, OBS, ACT)
    return b.replace(mc_return=jnp.zeros(B))


CASES = [("sac", {}), ("iql", {}), ("sacml", {}), ("cql", {"cql_lagrange": True}), ("calql", {"cql_lagrange": True}),
         ("awac", {}), ("td3", {}), ("td3bc", {}), ("bc", {})]


def make(name, extra):
    cfg = {**TINY, **extra}
    base = make_learner(name, OBS, ACT, cfg).config
    cfg.update({k: v for k, v in LRS.items() if k in base})
    return make_learner(name, OBS, ACT, cfg)


@pytest.mark.parametrize("name,extra", CASES)
def test_first_adam_step_of_each_group_is_its_learning_rate(name, extra):
    """Adam's first step moves every leaf with a non-negligible gradient by ~lr (|m/sqrt(v)| = 1)."""
    learner = make(name, extra)
    state = learner.init(jax.random.PRNGKey(1))
    new, _ = jax.jit(learner.update)(state, batch(), jax.random.PRNGKey(2))
    fields = {"actor": "actor_lr", "critic": "critic_lr", "log_temp": "temp_lr", "value": "value_lr",  # the docs' mapping
              "log_alpha_prime": "cql_alpha_prime_lr", "baseline": "baseline_lr", "alpha": "alpha_lr"}
    for group in learner.opts:
        field = fields[group]
        lr = learner.config[field]
        d = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel()
                            for a, b in zip(jax.tree.leaves(new.params[group]), jax.tree.leaves(state.params[group]))])
        moved = d[d > 1e-2 * lr]
        assert moved.size, (name, group)
        np.testing.assert_allclose(np.median(moved), lr, rtol=0.05, err_msg=f"{name}:{group} ({field})")


@pytest.mark.parametrize("name,extra", CASES)
def test_targets_are_polyak_of_the_updated_networks(name, extra):
    learner = make(name, extra)
    state = learner.init(jax.random.PRNGKey(1))
    new, _ = jax.jit(learner.update)(state, batch(), jax.random.PRNGKey(2))
    tau = learner.config.tau
    for t, o in (("target_critic", "critic"), ("target_actor", "actor")):
        if t not in state.params:
            continue
        for tn, on, to in zip(*(jax.tree.leaves(x) for x in (new.params[t], new.params[o], state.params[t]))):
            np.testing.assert_allclose(tn, tau * np.float64(on) + (1 - tau) * np.float64(to), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}:{t}")


def test_online_update_batches_mix_offline_rows_at_the_configured_ratio():
    class Probe:
        config = ml_collections.ConfigDict({"batch_size": 8})
        def update(self, state, batch, key):  # offline rows carry a finite mc_return, online ones -inf
            return state + 1.0, {"offline_share": jnp.isfinite(batch.mc_return).mean()}
        def act(self, state, obs, key, deterministic):
            return jnp.zeros(ACT)
    offline = Transitions.random(jax.random.PRNGKey(0), 50, OBS, ACT).replace(mc_return=jnp.zeros(50))
    step = make_online_step(Probe(), 1, 0.25, train=True)
    bufs = jax.tree.map(lambda x: jnp.stack([x, x]), replay.empty_buffer(OBS, ACT, 16))
    t = Transitions.random(jax.random.PRNGKey(1), 2, OBS, ACT).replace(mc_return=jnp.full(2, replay.NO_MC_RETURN))
    _, _, _, m = step(jnp.zeros(2), bufs, t, np.ones((2, OBS), np.float32), offline,
                      jax.random.split(jax.random.PRNGKey(2), 2), 1)
    np.testing.assert_array_equal(m["offline_share"], [0.25, 0.25])  # round(0.25 * 8) = 2 of 8 rows


def test_swept_td3_phased_offline_step_uses_each_lanes_values():
    base = dict(hidden_dims=(8, 8), batch_size=8)
    learner = make_learner("td3", OBS, ACT, base)
    swept = Swept.grid(learner, {"tau": [0.005, 0.5]}, 1)
    data = Transitions.random(jax.random.PRNGKey(0), 64, OBS, ACT)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    init_keys = jax.random.split(jax.random.PRNGKey(4), 1)
    states = unalias(swept.init_lanes(jnp.concatenate([init_keys, init_keys])))
    out, _ = make_offline_step(swept, 4)(states, data, keys, 0)
    plain = make_learner("td3", OBS, ACT, {**base, "tau": 0.5})
    ref, _ = make_offline_step(plain, 4)(unalias(jax.vmap(plain.init)(init_keys)), data, keys[1:], 0)
    for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(np.asarray(a)[1], np.asarray(b)[0], rtol=1e-5, atol=1e-6)
