"""IQL, TD3+BC and AWAC / AWR: every loss against an independent float64 NumPy computation.

The references re-implement the networks (ReLU MLPs, the critic / value ensembles, the
tanh-Gaussian log-density) in NumPy from the flax parameters, perturbed so that every bias is
non-zero. Sampled actions are rebuilt from the same key as tanh(mu + sigma * N(key)).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from np_reference import f64, np_det_actor, np_gaussian, np_q, np_v
from smac_jax import networks
from smac_jax.learners import ConfigError, available_learners, get_learner_class, make_learner
from smac_jax.learners import awac, iql, td3bc
from smac_jax.types import Transitions

OBS, ACT, B = 3, 2, 6
HIDDEN = (8, 8)
RTOL, ATOL = 1e-4, 1e-5
# Dataset actions are clipped to +-(1 - 1e-6) in float32 before log pi; the reference uses the
# same float32 number (atanh is steep there, so the float64 value 1 - 1e-6 would not match).
CLIP = float(np.float32(1.0 - 1e-6))


# ------------------------------------------------------------------------------------------------
# NumPy references
# ------------------------------------------------------------------------------------------------
def np_tanh_gauss_logp(mu, log_std, a):
    """log N(u; mu, sigma) - sum log(1 - tanh(u)^2), u = atanh(a), summed over action dims."""
    u = np.arctanh(a)
    gauss = -0.5 * ((u - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    return (gauss - np.log(1.0 - a**2)).sum(-1)


def np_sample(actor, obs, key):
    """tanh(mu + sigma * eps), eps = jax.random.normal(key, (B, act_dim)): distrax's draw."""
    mu, log_std = np_gaussian(actor, obs)
    eps = f64(jax.random.normal(key, mu.shape))
    return np.tanh(mu + np.exp(log_std) * eps)


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------
def perturb(tree, seed: int, scale: float = 0.3):
    """Every leaf plus N(0, scale) noise (so biases are non-zero), as float32."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    new = [jnp.asarray(f64(x) + scale * rng.normal(size=np.shape(x)), jnp.float32) for x in leaves]
    return jax.tree.unflatten(treedef, new)


def make_batch(seed: int = 0, boundary: bool = True) -> Transitions:
    rng = np.random.default_rng(seed)
    action = np.clip(rng.normal(0, 0.6, (B, ACT)), -0.95, 0.95)
    if boundary:
        action[0, 0], action[1, 1] = 1.0, -1.0  # exactly on the box edge
    f = lambda x: jnp.asarray(x, jnp.float32)
    return Transitions(
        obs=f(rng.normal(size=(B, OBS))), action=f(action), reward=f(rng.normal(size=B)),
        next_obs=f(rng.normal(size=(B, OBS))), terminated=f([0, 1, 0, 0, 1, 0]), truncated=f(np.zeros(B)),
        episode=jnp.zeros(B, jnp.int32), rtg=f(np.zeros(B)),
        mc_return=jnp.full(B, -jnp.inf, jnp.float32),  # online replay rows carry -inf
        traj_return=f(np.zeros(B)),
    )


def learner_and_params(name: str, seed: int = 0, **overrides):
    learner = make_learner(name, OBS, ACT, dict(hidden_dims=HIDDEN, **overrides))
    state = learner.init(jax.random.PRNGKey(seed))
    return learner, perturb(state.params, seed + 100)


def close(got, want):
    np.testing.assert_allclose(float(got), float(want), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------------
# Registry and hand-built helpers
# ------------------------------------------------------------------------------------------------
def test_registered_names():
    assert {"iql", "td3bc", "awac", "awr"} <= set(available_learners())
    assert get_learner_class("awr").name == "awr" and get_learner_class("awac").name == "awac"
    assert issubclass(get_learner_class("awr"), get_learner_class("awac"))
    assert issubclass(get_learner_class("td3bc"), get_learner_class("td3"))


def test_expectile_loss_hand_built():
    diff = jnp.array([2.0, -2.0, 0.0, 0.5, -0.1])
    want = [0.7 * 4, 0.3 * 4, 0.0, 0.7 * 0.25, 0.3 * 0.01]
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.7), want, rtol=1e-6)
    # tau = 0.5 is half the squared error
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.5), 0.5 * np.asarray(diff) ** 2, rtol=1e-6)


def test_advantage_weights_clip_at_100_hand_built():
    adv = jnp.array([-1.0, 0.0, 1.0, 2.0, 10.0, 1000.0])
    # IQL, beta = 3: exp(3A); exp(6) = 403 and beyond are clipped (exp(3000) overflows to inf)
    np.testing.assert_allclose(
        awac.advantage_weights(adv, 3.0, 100.0), [math.exp(-3), 1.0, math.exp(3), 100.0, 100.0, 100.0], rtol=1e-5
    )
    # AWAC, lambda = 1: exp(A); exp(2) = 7.39 stays, exp(10) is clipped
    np.testing.assert_allclose(
        awac.advantage_weights(adv, 1.0, 100.0), [math.exp(-1), 1.0, math.e, math.exp(2), 100.0, 100.0], rtol=1e-5
    )


def test_clipped_log_prob_is_finite_on_the_boundary():
    learner, params = learner_and_params("awac")
    batch = make_batch()
    dist = networks.gaussian_actor(learner.config, ACT).apply(params["actor"], batch.obs)
    assert not np.isfinite(np.asarray(dist.log_prob(batch.action))[:2]).any()
    got = awac.clipped_log_prob(dist, batch.action)
    mu, log_std = np_gaussian(params["actor"], batch.obs)
    want = np_tanh_gauss_logp(mu, log_std, np.clip(f64(batch.action), -CLIP, CLIP))
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# IQL
# ------------------------------------------------------------------------------------------------
def test_iql_value_loss_matches_numpy():
    learner, p = learner_and_params("iql")
    batch = make_batch()
    loss, info = iql.value_loss(p, batch, jax.random.PRNGKey(0), learner.config)
    u = np_q(p["target_critic"], batch.obs, batch.action).min(0) - np_v(p["value"], batch.obs)
    want = (np.where(u < 0, 0.3, 0.7) * u**2).mean()
    assert (u < 0).any() and (u > 0).any()
    close(loss, want)
    close(info["v_mean"], np_v(p["value"], batch.obs).mean())


def test_iql_critic_loss_matches_numpy():
    learner, p = learner_and_params("iql")
    batch = make_batch()
    loss, info = iql.critic_loss(p, batch, jax.random.PRNGKey(0), learner.config)
    y = f64(batch.reward) + 0.99 * (1 - f64(batch.terminated)) * np_v(p["value"], batch.next_obs)
    q = np_q(p["critic"], batch.obs, batch.action)
    close(loss, ((q - y) ** 2).mean(1).sum())
    close(info["target_mean"], y.mean())


def _iql_adv(p, batch):
    return np_q(p["target_critic"], batch.obs, batch.action).min(0) - np_v(p["value"], batch.obs)


@pytest.mark.parametrize("clip_some", [False, True])
def test_iql_actor_loss_gaussian_matches_numpy(clip_some):
    learner, p = learner_and_params("iql")
    batch = make_batch()
    beta = 3.0
    if clip_some:  # lower V so that about half the samples have exp(beta A) above 100
        adv = _iql_adv(p, batch)
        shift = math.log(100.0) / beta - np.median(adv) + 1e-3
        value = jax.tree.map(lambda x: x, p["value"])
        value["params"]["v"]["mlp"]["out"]["bias"] = value["params"]["v"]["mlp"]["out"]["bias"] - shift
        p = {**p, "value": value}
    adv = _iql_adv(p, batch)
    w_raw = np.exp(beta * adv)
    w = np.minimum(w_raw, 100.0)
    if clip_some:
        assert 0 < (w_raw > 100).sum() < B
    mu, log_std = np_gaussian(p["actor"], batch.obs)
    logp = np_tanh_gauss_logp(mu, log_std, np.clip(f64(batch.action), -CLIP, CLIP))
    loss, info = iql.actor_loss(p, batch, jax.random.PRNGKey(0), learner.config)
    np.testing.assert_allclose(float(loss), -(w * logp).mean(), rtol=RTOL, atol=1e-3)
    close(info["weight_mean"], w.mean())
    close(info["weight_clipped_frac"], (w_raw >= 100).mean())


def test_iql_actor_loss_deterministic_mean_matches_numpy():
    learner, p = learner_and_params("iql", policy_extraction="deterministic_mean")
    batch = make_batch()
    w = np.minimum(np.exp(3.0 * _iql_adv(p, batch)), 100.0)
    mu, _ = np_gaussian(p["actor"], batch.obs)
    want = (w * ((np.tanh(mu) - f64(batch.action)) ** 2).mean(-1)).mean()
    loss, _ = iql.actor_loss(p, batch, jax.random.PRNGKey(0), learner.config)
    close(loss, want)
    # only the mean head is trained
    g = jax.grad(lambda a: iql.actor_loss({**p, "actor": a}, batch, None, learner.config)[0])(p["actor"])
    assert not np.any(np.asarray(g["params"]["log_std"]["kernel"]))
    assert np.any(np.asarray(g["params"]["mean"]["kernel"]))


# ------------------------------------------------------------------------------------------------
# TD3+BC
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bc_w", [None, 0.3])
def test_td3bc_actor_loss_matches_numpy(bc_w):
    learner, p = learner_and_params("td3bc")
    batch = make_batch(boundary=False)
    if bc_w is not None:
        p = {**p, "bc_weight": jnp.float32(bc_w)}
    loss, info = td3bc.actor_loss(p, batch, jax.random.PRNGKey(0), learner.config)
    pi = np_det_actor(p["actor"], batch.obs)
    q1 = np_q(p["critic"], batch.obs, pi)[0]
    lam = 2.5 / np.abs(q1).mean()
    bc = ((pi - f64(batch.action)) ** 2).mean()
    close(info["lambda"], lam)
    close(info["bc_loss"], bc)
    close(loss, -lam * q1.mean() + (1.0 if bc_w is None else bc_w) * bc)
    # lambda is detached: the Q part of the gradient is lam * dQ/dpi, not d(Q / mean|Q|)
    g = jax.grad(lambda a: td3bc.actor_loss({**p, "actor": a}, batch, None, learner.config)[0])(p["actor"])
    def q_term(a):
        pi_ = networks.deterministic_actor(learner.config, ACT).apply(a, batch.obs)
        return -lam * networks.critic_net(learner.config).apply(p["critic"], batch.obs, pi_)[0].mean()
    def bc_term(a):
        pi_ = networks.deterministic_actor(learner.config, ACT).apply(a, batch.obs)
        return (1.0 if bc_w is None else bc_w) * ((pi_ - batch.action) ** 2).mean()
    g_ref = jax.tree.map(jnp.add, jax.grad(q_term)(p["actor"]), jax.grad(bc_term)(p["actor"]))
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_td3bc_bc_weight_schedule():
    steps = np.array([0, 1, 10, 50, 100, 1000])
    cfg = lambda **kw: make_learner("td3bc", OBS, ACT, kw).config
    np.testing.assert_allclose(td3bc.bc_weight(jnp.asarray(steps), cfg()), np.ones(len(steps)))
    np.testing.assert_allclose(
        td3bc.bc_weight(jnp.asarray(steps), cfg(bc_decay="multiplicative", bc_decay_rate=0.99)), 0.99**steps, rtol=1e-5
    )
    np.testing.assert_allclose(
        td3bc.bc_weight(jnp.asarray(steps), cfg(bc_decay="multiplicative", bc_decay_rate=0.99, bc_final_weight=0.5)),
        np.maximum(0.99**steps, 0.5), rtol=1e-5,
    )
    # long schedules stay exact: rate ** t with the rate rounded to float32 was 0.17% low at t = 100k
    long = np.array([5_000, 100_000, 200_000])
    np.testing.assert_allclose(
        td3bc.bc_weight(jnp.asarray(long), cfg(bc_decay="multiplicative", bc_decay_rate=0.9999, bc_final_weight=0.0)),
        0.9999**long, rtol=2e-5,
    )
    np.testing.assert_allclose(
        td3bc.bc_weight(jnp.asarray(steps), cfg(bc_decay="linear", bc_decay_steps=100, bc_final_weight=0.2)),
        1.0 - 0.8 * np.minimum(steps / 100, 1.0), rtol=1e-6,
    )
    with pytest.raises(ConfigError, match="bc_decay"):
        make_learner("td3bc", OBS, ACT, dict(bc_decay="exponential"))


def test_td3bc_update_uses_decayed_weight_and_policy_delay():
    learner = make_learner("td3bc", OBS, ACT, dict(hidden_dims=HIDDEN, bc_decay="linear", bc_decay_steps=4))
    state = learner.init(jax.random.PRNGKey(0))
    update = jax.jit(learner.update)
    batch = make_batch(boundary=False)
    for t in range(6):
        new, info = update(state, batch, jax.random.PRNGKey(t))
        close(info["bc_weight"], max(1.0 - t / 4, 0.0))
        assert set(new.params) == {"actor", "target_actor", "critic", "target_critic"}
        actor_moved = any(np.any(np.asarray(a) != np.asarray(b))
                          for a, b in zip(jax.tree.leaves(new.params["actor"]), jax.tree.leaves(state.params["actor"])))
        assert actor_moved == (t % 2 == 0)  # TD3's policy delay of 2
        state = new


# ------------------------------------------------------------------------------------------------
# AWAC / AWR
# ------------------------------------------------------------------------------------------------
def test_awac_critic_loss_matches_numpy():
    learner, p = learner_and_params("awac")
    batch = make_batch()
    key = jax.random.PRNGKey(7)
    loss, info = awac.critic_loss(p, batch, key, learner.config)
    next_a = np_sample(p["actor"], batch.next_obs, key)
    y = f64(batch.reward) + 0.99 * (1 - f64(batch.terminated)) * np_q(p["target_critic"], batch.next_obs, next_a).min(0)
    q = np_q(p["critic"], batch.obs, batch.action)
    close(info["target_mean"], y.mean())
    close(loss, ((q - y) ** 2).mean(1).sum())


@pytest.mark.parametrize("critic_scale", [1.0, 30.0])
def test_awac_actor_loss_matches_numpy(critic_scale):
    learner, p = learner_and_params("awac")
    if critic_scale != 1.0:  # larger advantages, so that some weights are clipped at 100
        out = p["critic"]["params"]["q"]["mlp"]["out"]
        p = jax.tree.map(lambda x: x, p)
        p["critic"]["params"]["q"]["mlp"]["out"] = {k: v * critic_scale for k, v in out.items()}
    batch = make_batch()
    key = jax.random.PRNGKey(3)
    loss, info = awac.actor_loss(p, batch, key, learner.config)
    a_pi = np_sample(p["actor"], batch.obs, key)
    adv = np_q(p["critic"], batch.obs, batch.action).min(0) - np_q(p["critic"], batch.obs, a_pi).min(0)
    w_raw = np.exp(adv / 1.0)
    w = np.minimum(w_raw, 100.0)
    if critic_scale != 1.0:
        assert 0 < (w_raw > 100).sum() < B
    mu, log_std = np_gaussian(p["actor"], batch.obs)
    logp = np_tanh_gauss_logp(mu, log_std, np.clip(f64(batch.action), -CLIP, CLIP))
    close(info["adv_mean"], adv.mean())
    np.testing.assert_allclose(float(loss), -(w * logp).mean(), rtol=RTOL, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# Jitted, seed-vmapped updates; hand-over
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,overrides",
    [
        ("iql", {}),
        ("iql", dict(policy_extraction="deterministic_mean", optimizer="muon")),
        ("td3bc", dict(bc_decay="multiplicative", bc_decay_rate=0.9)),
        ("awac", {}),
        ("awr", {}),
    ],
)
def test_update_jit_vmap_two_seeds(name, overrides):
    learner = make_learner(name, OBS, ACT, dict(hidden_dims=HIDDEN, **overrides))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    # per-seed inits stacked (eagerly: reuses the op compilations the loss tests already made)
    state0 = jax.tree.map(lambda *x: jnp.stack(x), *[learner.init(k) for k in keys])
    update = jax.jit(jax.vmap(learner.update, in_axes=(0, None, 0)))
    batch = make_batch()
    state = state0
    for t in range(3):
        state, metrics = update(state, batch, jax.random.split(jax.random.PRNGKey(t), 2))
        for k, v in metrics.items():
            assert np.isfinite(np.asarray(v)).all(), (name, k, v)
    assert set(state.params) == set(state0.params) and int(state.step[0]) == 3
    assert np.any(np.asarray(state.params["critic"]["params"]["q"]["mlp"]["out"]["bias"])
                  != np.asarray(state0.params["critic"]["params"]["q"]["mlp"]["out"]["bias"]))
    for det in (False, True):
        a = jax.vmap(learner.act, in_axes=(0, None, 0, None))(state, batch.obs, keys, det)
        assert a.shape == (2, B, ACT) and np.all(np.abs(np.asarray(a)) <= 1.0)


def _tree_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_transfer_into_and_out_of_iql():
    key = jax.random.PRNGKey(5)
    td3 = make_learner("td3", OBS, ACT, dict(hidden_dims=HIDDEN))
    src = td3.init(jax.random.PRNGKey(1))
    dst = make_learner("iql", OBS, ACT, dict(hidden_dims=HIDDEN))
    st = dst.transfer(key, src, td3)
    assert _tree_equal(st.params["critic"], src.params["critic"])
    assert _tree_equal(st.params["target_critic"], src.params["target_critic"])
    assert _tree_equal(st.params["value"], dst.init(key).params["value"])  # fresh V
    np.testing.assert_array_equal(st.params["actor"]["params"]["log_std"]["bias"], -1.0)
    assert int(st.extra["value_warmup_until"]) == 0  # value_warmup_steps defaults to 0
    # out of IQL: V dropped, actor reduced to its mean
    for name in ("td3", "sac", "awac"):
        out = make_learner(name, OBS, ACT, dict(hidden_dims=HIDDEN))
        st2 = out.transfer(key, st, dst)
        assert "value" not in st2.params
        assert _tree_equal(st2.params["critic"], st.params["critic"])
    to_td3 = make_learner("td3", OBS, ACT, dict(hidden_dims=HIDDEN)).transfer(key, st, dst)
    assert "log_std" not in to_td3.params["actor"]["params"]
    # SAC -> AWAC -> AWR
    sac = make_learner("sac", OBS, ACT, dict(hidden_dims=HIDDEN))
    s_sac = sac.init(jax.random.PRNGKey(2))
    aw = make_learner("awac", OBS, ACT, dict(hidden_dims=HIDDEN))
    s_aw = aw.transfer(key, s_sac, sac)
    assert set(s_aw.params) == {"actor", "critic", "target_critic"}
    assert _tree_equal(s_aw.params["actor"], s_sac.params["actor"])
    awr = make_learner("awr", OBS, ACT, dict(hidden_dims=HIDDEN))
    assert _tree_equal(awr.transfer(key, s_aw, aw).params, s_aw.params)


def test_iql_value_warmup_after_handover_from_learner_without_value():
    sac = make_learner("sac", OBS, ACT, dict(hidden_dims=HIDDEN))
    src = sac.init(jax.random.PRNGKey(1))
    dst = make_learner("iql", OBS, ACT, dict(hidden_dims=HIDDEN, value_warmup_steps=2))
    state = dst.transfer(jax.random.PRNGKey(2), src, sac)
    start = state
    update = jax.jit(dst.update)
    batch = make_batch()
    for t in range(2):
        state, info = update(state, batch, jax.random.PRNGKey(t))
        assert float(info["value_warmup"]) == 1.0
    for g in ("actor", "critic", "target_critic"):
        assert _tree_equal(state.params[g], start.params[g]), g
    assert not _tree_equal(state.params["value"], start.params["value"])
    state, info = update(state, batch, jax.random.PRNGKey(9))
    assert float(info["value_warmup"]) == 0.0 and not _tree_equal(state.params["critic"], start.params["critic"])
    # IQL -> IQL copies V and does not warm up
    again = dst.transfer(jax.random.PRNGKey(3), state, dst)
    assert int(again.extra["value_warmup_until"]) == 0
    assert _tree_equal(again.params["value"], state.params["value"])


def test_iql_config_errors():
    with pytest.raises(ConfigError, match="policy_extraction"):
        make_learner("iql", OBS, ACT, dict(policy_extraction="mode"))
    with pytest.raises(ConfigError, match="expectile"):
        make_learner("iql", OBS, ACT, dict(expectile=1.0))
