"""Ensembles applied member by member (``ensemble_layout``) against the batched ensemble."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smac_jax import networks
from smac_jax.learners import ConfigError, make_learner, resolve_config
from smac_jax.networks.mlp import QEnsemble, ValueEnsemble
from smac_jax.types import Transitions

OBS, ACT, B = 4, 2, 7


def _inputs():
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    return jax.random.normal(k1, (B, OBS)), jax.random.uniform(k2, (B, ACT), minval=-1, maxval=1)


@pytest.mark.parametrize("num,layer_norm", [(2, False), (2, True), (3, False)])
def test_separate_members_equal_the_batched_ensemble(num, layer_norm):
    obs, act = _inputs()
    batched, separate = QEnsemble(num, (16, 16), layer_norm), QEnsemble(num, (16, 16), layer_norm, separate=True)
    params = batched.init(jax.random.PRNGKey(0), obs, act)
    same_init = separate.init(jax.random.PRNGKey(0), obs, act)
    assert jax.tree.structure(params) == jax.tree.structure(same_init)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(same_init)))
    # members must differ, so that a member applied with another's parameters would be caught
    q = batched.apply(params, obs, act)
    assert q.shape == (num, B) and not np.allclose(q[0], q[1])
    np.testing.assert_allclose(separate.apply(params, obs, act), q, rtol=1e-6, atol=1e-6)
    grad = lambda net: jax.grad(lambda p: (net.apply(p, obs, act) ** 2).sum())(params)  # noqa: E731
    for a, b in zip(jax.tree.leaves(grad(separate)), jax.tree.leaves(grad(batched))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_separate_value_members_equal_the_batched_ensemble():
    obs, _ = _inputs()
    batched, separate = ValueEnsemble(2, (16,)), ValueEnsemble(2, (16,), separate=True)
    params = batched.init(jax.random.PRNGKey(0), obs)
    np.testing.assert_allclose(separate.apply(params, obs), batched.apply(params, obs), rtol=1e-6, atol=1e-6)


def test_ensemble_layout_resolution_and_validation():
    cfg = resolve_config("sac")
    assert cfg.ensemble_layout == "auto"
    on_cpu = jax.default_backend() == "cpu"
    assert networks.separate_members(cfg, 2) == on_cpu
    assert not networks.separate_members(cfg, networks.SEPARATE_MAX_MEMBERS + 1)
    assert networks.critic_net(resolve_config("sac", {"ensemble_layout": "separate", "num_critics": 10})).separate
    assert not networks.critic_net(resolve_config("sac", {"ensemble_layout": "batched"})).separate
    with pytest.raises(ConfigError, match="ensemble_layout='vmap' must be one of"):
        resolve_config("td3bc", {"ensemble_layout": "vmap"})


@pytest.mark.parametrize("name", ["sac", "cql", "td3bc"])
def test_an_update_is_the_same_in_either_layout(name):
    """Same parameters after a few updates (float32 rounding apart) in both layouts."""
    n = 64
    ks = jax.random.split(jax.random.PRNGKey(3), 4)
    z = jnp.zeros(n)
    data = Transitions(obs=jax.random.normal(ks[0], (n, OBS)), action=jax.random.uniform(ks[1], (n, ACT), minval=-1, maxval=1),
                       reward=jax.random.normal(ks[2], (n,)), next_obs=jax.random.normal(ks[3], (n, OBS)), terminated=z,
                       truncated=z, episode=jnp.zeros(n, jnp.int32), rtg=z, mc_return=z, traj_return=z)
    states = {}
    for layout in ("batched", "separate"):
        learner = make_learner(name, OBS, ACT, {"hidden_dims": (16, 16), "batch_size": 16, "ensemble_layout": layout})
        state = learner.init(jax.random.PRNGKey(0))
        for i in range(3):
            state, _ = jax.jit(learner.update)(state, data, jax.random.PRNGKey(10 + i))
        states[layout] = state
    for a, b in zip(jax.tree.leaves(states["separate"].params), jax.tree.leaves(states["batched"].params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_random_batch_has_every_field_in_range():
    import jax

    from smac_jax.types import Transitions

    b = Transitions.random(jax.random.PRNGKey(0), 64, 5, 2)
    b.check_shapes(5, 2)
    assert float(abs(b.action).max()) <= 1.0 and set(b.terminated.tolist()) <= {0.0, 1.0}
    assert b.episode.dtype.name == "int32" and b.size == 64 and 0 < float(b.terminated.sum()) < 64
