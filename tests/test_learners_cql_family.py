"""CQL, Cal-QL, SAC+ML and BC: every loss against an independent float64 NumPy computation on a
tiny network, the CQL logsumexp and the Cal-QL bound on hand-built cases, jitted seed-vmapped
updates, and hand-over to critic-based learners.

Stochastic parts are reproduced from the same PRNG keys: a tanh-Gaussian sample with key k and
sample shape S is tanh(mu + sigma * jax.random.normal(k, S + (B, A))) (checked below); everything
else (MLPs, log-densities, logsumexp, targets) is recomputed here in float64.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smac_jax.learners.bc as bc
import smac_jax.learners.calql as calql
import smac_jax.learners.cql as cql
import smac_jax.learners.sacml as sacml
from smac_jax import networks
from smac_jax.learners import get_learner_class, make_learner, sac
from smac_jax.types import Transitions

OBS, ACT, B = 3, 2, 5
TINY = dict(hidden_dims=(8,), batch_size=B)
RTOL, ATOL = 1e-4, 1e-5


# ---------------------------------------------------------------------------------------------
# float64 NumPy references
# ---------------------------------------------------------------------------------------------
def f64(x):
    return np.asarray(x, np.float64)


def np_mlp(layers, x, e=None):
    """ReLU MLP from a flax param dict {dense_0, ..., out}; ``e`` selects an ensemble member."""
    pick = (lambda a: f64(a)) if e is None else (lambda a: f64(a)[e])
    i = 0
    while f"dense_{i}" in layers:
        x = np.maximum(x @ pick(layers[f"dense_{i}"]["kernel"]) + pick(layers[f"dense_{i}"]["bias"]), 0.0)
        i += 1
    if "out" in layers:
        x = x @ pick(layers["out"]["kernel"]) + pick(layers["out"]["bias"])
    return x


def np_q(critic, obs, act):
    """(E, ...) Q values; obs broadcast against act's leading axes."""
    layers = critic["params"]["q"]["mlp"]
    n_e = f64(layers["out"]["bias"]).shape[0]
    obs = np.broadcast_to(f64(obs), f64(act).shape[:-1] + (f64(obs).shape[-1],))
    x = np.concatenate([obs, f64(act)], -1)
    return np.stack([np_mlp(layers, x, e)[..., 0] for e in range(n_e)])


def np_actor(actor, obs, lo=-20.0, hi=2.0):
    p = actor["params"]
    h = np_mlp(p["trunk"], f64(obs))
    mean = h @ f64(p["mean"]["kernel"]) + f64(p["mean"]["bias"])
    log_std = np.clip(h @ f64(p["log_std"]["kernel"]) + f64(p["log_std"]["bias"]), lo, hi)
    return mean, log_std


def np_gauss_logp(u, mean, log_std):
    z = (u - mean) / np.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def np_sample(actor, obs, key, shape=()):
    """tanh-Gaussian sample and log-prob from explicit N(0, 1) noise drawn with ``key``."""
    mean, log_std = np_actor(actor, obs)
    eps = f64(jax.random.normal(key, tuple(shape) + mean.shape))
    u = mean + np.exp(log_std) * eps
    logp = np_gauss_logp(u, mean, log_std) - np.log(1.0 - np.tanh(u) ** 2).sum(-1)
    return np.tanh(u), logp


def np_data_logp(actor, obs, action, eps=1e-6):
    """log pi(clip(a)|s), the clip done in float32 like the learner, the rest in float64."""
    a = f64(np.clip(np.asarray(action, np.float32), np.float32(-1 + eps), np.float32(1 - eps)))
    mean, log_std = np_actor(actor, obs)
    return np_gauss_logp(np.arctanh(a), mean, log_std) - np.log(1.0 - a**2).sum(-1)


def np_logsumexp(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_td_target(params, batch, key, cfg):
    T = math.exp(float(params["log_temp"]))
    if cfg.get("cql_max_target_backup", False):
        a, logp = np_sample(params["actor"], batch.next_obs, key, (cfg.cql_n_actions,))  # (n, B, A), (n, B)
        q = np_q(params["target_critic"], batch.next_obs, a).min(0)  # (n, B)
        j = q.argmax(0)
        next_q = q[j, np.arange(B)]
        logp = logp[j, np.arange(B)]
    else:
        a, logp = np_sample(params["actor"], batch.next_obs, key)
        next_q = np_q(params["target_critic"], batch.next_obs, a).min(0)
    if cfg.backup_entropy:
        next_q = next_q - T * logp
    return f64(batch.reward) + cfg.gamma * (1 - f64(batch.terminated)) * next_q


def np_cql_critic_loss(params, batch, key, cfg, calql_bound=False):
    k_td, k_rand, k_pi, k_next = jax.random.split(key, 4)
    n = cfg.cql_n_actions
    y = np_td_target(params, batch, k_td, cfg)
    q_data = np_q(params["critic"], batch.obs, batch.action)  # (E, B)
    td = ((q_data - y) ** 2).mean(1).sum()
    a_rand = f64(jax.random.uniform(k_rand, (n, B, ACT), minval=-1.0, maxval=1.0))
    a_pi, lp_pi = np_sample(params["actor"], batch.obs, k_pi, (n,))
    a_nx, lp_nx = np_sample(params["actor"], batch.next_obs, k_next, (n,))
    q_rand = np_q(params["critic"], batch.obs, a_rand)  # (E, n, B)
    q_pi = np_q(params["critic"], batch.obs, a_pi)
    q_nx = np_q(params["critic"], batch.obs, a_nx)  # Q(s, a ~ pi(s'))
    if calql_bound:
        mc = f64(batch.mc_return)
        q_pi, q_nx = np.maximum(q_pi, mc), np.maximum(q_nx, mc)
    t = cfg.cql_temp
    cat = np.concatenate([q_rand - ACT * np.log(0.5), q_nx - lp_nx, q_pi - lp_pi], axis=1)  # (E, 3n, B)
    ood = t * np_logsumexp(cat / t, axis=1)
    diff = np.clip(ood - q_data, cfg.cql_clip_diff_min, cfg.cql_clip_diff_max).mean(1)
    if cfg.cql_lagrange:
        ap = math.exp(float(params["log_alpha_prime"]))
        pen = ap * cfg.cql_alpha * (diff - cfg.cql_target_action_gap)
    else:
        pen = cfg.cql_alpha * diff
    return td + pen.sum(), diff


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
def make_batch(seed=0, mc_return=None):
    rng = np.random.default_rng(seed)
    action = np.clip(rng.normal(0.0, 0.6, (B, ACT)), -0.99, 0.99)
    action[0, 0], action[3, 1] = 1.0, -1.0  # boundary actions, as in real datasets
    if mc_return is None:
        mc_return = np.array([5.0, -3.0, -np.inf, 0.2, 40.0])
    f = lambda x: jnp.asarray(x, jnp.float32)
    return Transitions(
        obs=f(rng.normal(size=(B, OBS))), action=f(action), reward=f(rng.normal(size=B)),
        next_obs=f(rng.normal(size=(B, OBS))), terminated=f([0, 1, 0, 0, 1]), truncated=f(np.zeros(B)),
        episode=jnp.zeros(B, jnp.int32), rtg=f(np.zeros(B)), mc_return=f(mc_return), traj_return=f(np.zeros(B)),
    )


def perturbed_state(learner, seed=0):
    """A state whose parameters are away from init (so every term matters), temperature 0.3,
    target critic different from the critic."""
    state = learner.init(jax.random.PRNGKey(seed))
    params = dict(state.params)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(100 + seed), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    params = jax.tree.unflatten(tree, leaves)
    if "log_temp" in params:
        params["log_temp"] = jnp.asarray(np.log(0.3), jnp.float32)
    if "log_alpha_prime" in params:
        params["log_alpha_prime"] = jnp.asarray(np.log(2.0), jnp.float32)
    return state.replace(params=params)


def test_registered_names():
    assert get_learner_class("cql") is cql.CQL
    assert get_learner_class("calql") is calql.CalQL
    assert get_learner_class("sacml") is sacml.SACML
    assert get_learner_class("bc") is bc.BC
    c = make_learner("cql", OBS, ACT).config
    assert (c.cql_alpha, c.cql_n_actions, c.cql_temp, c.cql_lagrange, c.cql_max_target_backup) == (5.0, 10, 1.0, False, False)
    assert make_learner("sacml", OBS, ACT).config.ml_weight == 30.0


def test_sample_noise_convention():
    """The reproduction used by every reference: distrax draws N(0,1) noise of shape S + (B, A)."""
    learner = make_learner("sac", OBS, ACT, TINY)
    st = perturbed_state(learner)
    obs = make_batch().obs
    key = jax.random.PRNGKey(7)
    dist = learner_dist(learner, st, obs)
    a, lp = dist.sample_and_log_prob(seed=key, sample_shape=(4,))
    a_np, lp_np = np_sample(st.params["actor"], obs, key, (4,))
    np.testing.assert_allclose(a, a_np, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lp, lp_np, rtol=RTOL, atol=1e-4)


def learner_dist(learner, state, obs):
    return networks.gaussian_actor(learner.config, ACT).apply(state.params["actor"], obs)


# ---------------------------------------------------------------------------------------------
# CQL / Cal-QL: the logsumexp term and the bound on hand-built cases
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("temp", [1.0, 0.5])
def test_cql_logsumexp_constant_q(temp):
    """Q = c everywhere: temp * logsumexp((c - log mu_j)/temp) = c + temp * log(sum_j exp(-log mu_j / temp)).
    With all 30 densities uniform (log mu = |A| log 0.5) that is c + log(30) + |A| log 2 for any temp=1."""
    c, n, E, Bh = 1.7, 10, 2, 3
    q = jnp.full((E, Bh, n), c)
    lp_pi, lp_next = jnp.full((Bh, n), -0.3), jnp.full((Bh, n), 0.8)
    got = cql.cql_logsumexp(q, q, q, lp_pi, lp_next, ACT, temp)
    want = c + temp * np.log(n * np.exp(ACT * np.log(2) / temp) + n * np.exp(0.3 / temp) + n * np.exp(-0.8 / temp))
    np.testing.assert_allclose(got, np.full((E, Bh), want), rtol=1e-6)
    uni = jnp.full((Bh, n), ACT * np.log(0.5))
    got = cql.cql_logsumexp(q, q, q, uni, uni, ACT, 1.0)
    np.testing.assert_allclose(got, c + np.log(30.0) + ACT * np.log(2.0), rtol=1e-6)


def test_cql_logsumexp_dominant_sample_and_order():
    """One sample far above the rest: the soft max is that sample's importance-weighted value;
    each group is corrected by its own density (swapping the pi(s) / pi(s') log-probs changes it)."""
    n = 10
    q_rand = jnp.zeros((1, 1, n)).at[0, 0, 3].set(50.0)
    zeros = jnp.zeros((1, 1, n))
    lp = jnp.zeros((1, n))
    got = float(cql.cql_logsumexp(q_rand, zeros, zeros, lp, lp, 3, 1.0)[0, 0])
    np.testing.assert_allclose(got, 50.0 + 3 * np.log(2.0), rtol=1e-6)
    q_pi = jnp.zeros((1, 1, n)).at[0, 0, 0].set(50.0)
    lp_pi = jnp.zeros((1, n)).at[0, 0].set(2.0)
    got = float(cql.cql_logsumexp(zeros, q_pi, zeros, lp_pi, lp, 3, 1.0)[0, 0])
    np.testing.assert_allclose(got, 48.0, rtol=1e-6)
    swapped = float(cql.cql_logsumexp(zeros, q_pi, zeros, lp, lp_pi, 3, 1.0)[0, 0])
    np.testing.assert_allclose(swapped, 50.0, rtol=1e-6)


def test_calql_lower_bound_hand_built():
    q = jnp.array([[[1.0, 5.0, -4.0], [-2.0, 0.0, 7.0]], [[3.5, 2.0, 4.0], [-9.0, 1.0, 2.0]]])  # (E=2, B=2, n=3)
    mc = jnp.array([3.0, -jnp.inf])
    want = np.array([[[3.0, 5.0, 3.0], [-2.0, 0.0, 7.0]], [[3.5, 3.0, 4.0], [-9.0, 1.0, 2.0]]])
    np.testing.assert_array_equal(calql.calql_lower_bound(q, mc), want)
    g = jax.grad(lambda q: calql.calql_lower_bound(q, mc).sum())(q)
    np.testing.assert_array_equal(g, (want == np.asarray(q)).astype(np.float32))  # no gradient where lifted
    assert np.isfinite(np.asarray(g)).all()


def test_cql_penalty_constant_critic_through_the_loss():
    """A critic with Q == c (zero output kernel): the penalty is logsumexp_j(-log mu_j), independent
    of c, and its gradient w.r.t. the output bias cancels; only the TD part moves the bias."""
    learner = make_learner("cql", OBS, ACT, TINY)
    st = perturbed_state(learner)
    batch = make_batch()
    key = jax.random.PRNGKey(3)
    diffs = []
    loss_and_grad = jax.jit(jax.value_and_grad(
        lambda cp, p: cql.critic_loss({**p, "critic": cp}, batch, key, learner.config), has_aux=True))
    for c in (0.0, 2.5):
        p = jax.tree.map(lambda x: x, st.params)
        out = dict(p["critic"]["params"]["q"]["mlp"]["out"])
        out["kernel"] = jnp.zeros_like(out["kernel"])
        out["bias"] = jnp.full_like(out["bias"], c)
        p["critic"] = {"params": {"q": {"mlp": {**p["critic"]["params"]["q"]["mlp"], "out": out}}}}
        (_, info), g = loss_and_grad(p["critic"], p)
        k_td, k_rand, k_pi, k_next = jax.random.split(key, 4)
        _, lp_pi = np_sample(p["actor"], batch.obs, k_pi, (10,))
        _, lp_nx = np_sample(p["actor"], batch.next_obs, k_next, (10,))
        neg = np.concatenate([np.full((10, B), -ACT * np.log(0.5)), -lp_nx, -lp_pi], 0)
        np.testing.assert_allclose(info["cql_diff"], np_logsumexp(neg, 0).mean(), rtol=RTOL)
        y = np_td_target(p, batch, k_td, learner.config)
        np.testing.assert_allclose(g["params"]["q"]["mlp"]["out"]["bias"][:, 0], np.full(2, 2 * (c - y).mean()), rtol=RTOL, atol=ATOL)
        diffs.append(float(info["cql_diff"]))
    np.testing.assert_allclose(diffs[0], diffs[1], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# CQL / Cal-QL critic losses against float64
# ---------------------------------------------------------------------------------------------
CQL_VARIANTS = [
    dict(),
    dict(cql_lagrange=True, cql_target_action_gap=0.5, cql_max_target_backup=True, backup_entropy=True),
    dict(cql_temp=0.7, cql_n_actions=4, cql_clip_diff_min=4.0, cql_clip_diff_max=10.0, backup_entropy=True),
]


@pytest.mark.parametrize("name", ["cql", "calql"])
@pytest.mark.parametrize("variant", range(len(CQL_VARIANTS)))
def test_critic_loss_matches_numpy(name, variant):
    learner = make_learner(name, OBS, ACT, {**TINY, **CQL_VARIANTS[variant]})
    st = perturbed_state(learner)
    batch = make_batch(1)
    key = jax.random.PRNGKey(11)
    loss, info = learner.critic_loss_fn(st.params, batch, key, learner.config)
    want, diff = np_cql_critic_loss(st.params, batch, key, learner.config, calql_bound=(name == "calql"))
    np.testing.assert_allclose(loss, want, rtol=RTOL)
    np.testing.assert_allclose(info["cql_diff"], diff.mean(), rtol=RTOL, atol=ATOL)
    if name == "calql":  # the bound is active on this batch, so Cal-QL != CQL here
        cql_want, _ = np_cql_critic_loss(st.params, batch, key, learner.config, calql_bound=False)
        assert abs(cql_want - want) > 1e-2
    if learner.config.cql_lagrange:
        ap_loss, ap_info = cql.alpha_prime_loss(st.params, info["cql_diff"], learner.config)
        np.testing.assert_allclose(ap_loss, -2.0 * learner.config.cql_alpha * (diff.mean() - 0.5), rtol=RTOL)
        g = jax.grad(lambda p: cql.alpha_prime_loss({**st.params, "log_alpha_prime": p}, info["cql_diff"], learner.config)[0])(
            st.params["log_alpha_prime"])
        np.testing.assert_allclose(g, ap_loss, rtol=RTOL)  # d/dlog a' of -a' K = -a' K


def test_calql_online_rows_unbounded_and_finite():
    """mc_return = -inf (online transitions): Cal-QL's loss and gradient equal CQL's exactly."""
    cfg_l = make_learner("calql", OBS, ACT, TINY)
    st = perturbed_state(cfg_l)
    batch = make_batch(2, mc_return=np.full(B, -np.inf))
    key = jax.random.PRNGKey(5)
    f_cal = lambda c: calql.critic_loss({**st.params, "critic": c}, batch, key, cfg_l.config)[0]
    f_cql = lambda c: cql.critic_loss({**st.params, "critic": c}, batch, key, cfg_l.config)[0]
    (l1, g1), (l2, g2) = (jax.jit(jax.value_and_grad(f))(st.params["critic"]) for f in (f_cal, f_cql))
    assert np.isfinite(l1) and all(np.isfinite(x).all() for x in jax.tree.leaves(g1))
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), g1, g2)


def test_temperature_loss_matches_numpy():
    learner = make_learner("cql", OBS, ACT, TINY)
    st = perturbed_state(learner)
    batch = make_batch()
    key = jax.random.PRNGKey(9)
    loss, _ = sac.temperature_loss(st.params, batch, key, learner.config)
    _, logp = np_sample(st.params["actor"], batch.obs, key)
    np.testing.assert_allclose(loss, 0.3 * (-logp.mean() + ACT), rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# SAC+ML and BC
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lambda_actions", ["dataset", "policy"])
def test_sacml_actor_loss_matches_numpy(lambda_actions):
    learner = make_learner("sacml", OBS, ACT, {**TINY, "ml_lambda_actions": lambda_actions})
    st = perturbed_state(learner)
    batch = make_batch(3)
    key = jax.random.PRNGKey(21)
    loss, info = sacml.actor_loss(st.params, batch, key, learner.config)
    a, logp = np_sample(st.params["actor"], batch.obs, key)
    q_pi = np_q(st.params["critic"], batch.obs, a).min(0)
    q_ref = np_q(st.params["critic"], batch.obs, batch.action).min(0) if lambda_actions == "dataset" else q_pi
    lam = 30.0 / np.abs(q_ref).mean()
    ml = np_data_logp(st.params["actor"], batch.obs, batch.action).mean()
    want = lam * (0.3 * logp - q_pi).mean() - ml
    np.testing.assert_allclose(info["ml_lambda"], lam, rtol=RTOL)
    np.testing.assert_allclose(loss, want, rtol=RTOL)
    # lambda carries no gradient: the gradient equals that of the loss with lambda frozen.
    g = jax.jit(jax.grad(lambda p: sacml.actor_loss({**st.params, "actor": p}, batch, key, learner.config)[0]))(
        st.params["actor"])

    def frozen(p):
        d = learner_dist(learner, st.replace(params={**st.params, "actor": p}), batch.obs)
        aa, lp = d.sample_and_log_prob(seed=key)
        q = networks.critic_net(learner.config).apply(st.params["critic"], batch.obs, aa).min(0)
        return lam * (0.3 * lp - q).mean() - bc.dataset_log_prob(learner.config, p, batch.obs, batch.action).mean()

    g2 = jax.jit(jax.grad(frozen))(st.params["actor"])
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4), g, g2)


def test_sacml_critic_is_sac():
    learner = make_learner("sacml", OBS, ACT, TINY)
    st = perturbed_state(learner)
    batch = make_batch(4)
    key = jax.random.PRNGKey(2)
    loss, _ = learner.critic_loss_fn(st.params, batch, key, learner.config)
    y = np_td_target(st.params, batch, key, learner.config)  # entropy backup on, like SAC
    q = np_q(st.params["critic"], batch.obs, batch.action)
    np.testing.assert_allclose(loss, ((q - y) ** 2).mean(1).sum(), rtol=RTOL)


def test_bc_loss_matches_numpy_and_boundary_clip():
    learner = make_learner("bc", OBS, ACT, TINY)
    st = perturbed_state(learner)
    batch = make_batch(5)
    loss, _ = bc.bc_loss(st.params, batch, None, learner.config)
    np.testing.assert_allclose(loss, -np_data_logp(st.params["actor"], batch.obs, batch.action).mean(), rtol=RTOL)
    g = jax.grad(lambda p: bc.bc_loss({"actor": p}, batch, None, learner.config)[0])(st.params["actor"])
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(g))
    # Without the clip the boundary actions (rows 0 and 3) have no finite log-density.
    raw = learner_dist(learner, st, batch.obs).log_prob(batch.action)
    assert not np.isfinite(np.asarray(raw)[[0, 3]]).any()
    assert np.isfinite(np.asarray(bc.dataset_log_prob(learner.config, st.params["actor"], batch.obs, batch.action))).all()


def test_bc_act_deterministic_is_tanh_mean():
    learner = make_learner("bc", OBS, ACT, TINY)
    st = perturbed_state(learner)
    obs = make_batch().obs
    mean, _ = np_actor(st.params["actor"], obs)
    np.testing.assert_allclose(learner.act(st, obs, jax.random.PRNGKey(0), True), np.tanh(mean), rtol=RTOL, atol=ATOL)
    assert set(st.params) == {"actor"} and set(st.opt_state) == {"actor"}


# ---------------------------------------------------------------------------------------------
# jitted, seed-vmapped updates; hand-over
# ---------------------------------------------------------------------------------------------
UPDATE_CASES = [
    ("cql", dict(cql_lagrange=True, cql_max_target_backup=True)),
    ("calql", dict()),
    ("sacml", dict()),
    ("bc", dict()),
]


@pytest.mark.parametrize("name,overrides", UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES])
def test_update_jit_vmap_finite(name, overrides):
    learner = make_learner(name, OBS, ACT, {**TINY, **overrides})
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    batch = make_batch(6)  # mixed mc_return: bounded, unbounded (-inf) and boundary actions
    step = jax.jit(jax.vmap(learner.update, in_axes=(0, None, 0)))
    before = jax.tree.map(np.asarray, states.params["actor"])
    for i in range(3):
        states, metrics = step(states, batch, jax.random.split(jax.random.PRNGKey(i + 1), 2))
    assert metrics, name
    for k, v in metrics.items():
        assert np.shape(v)[0] == 2 and np.isfinite(np.asarray(v)).all(), (name, k, v)
    assert np.asarray(states.step).tolist() == [3, 3]
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), states.params["actor"], before)
    assert max(jax.tree.leaves(moved)) > 0
    if name == "cql":
        assert "alpha_prime" in metrics and float(np.asarray(metrics["alpha_prime"]).mean()) != 1.0


def test_bc_hands_over_with_fresh_critic():
    src = make_learner("bc", OBS, ACT, TINY)
    src_state = perturbed_state(src)
    key = jax.random.PRNGKey(4)
    for dst_name in ("sac", "cql", "calql", "sacml", "td3"):
        dst = make_learner(dst_name, OBS, ACT, TINY)
        fresh = dst.init(key)
        got = dst.transfer(key, src_state, src)
        for g in ("critic", "target_critic"):
            jax.tree.map(np.testing.assert_array_equal, got.params[g], fresh.params[g])
        if dst_name == "td3":
            expected = {"params": {k: v for k, v in src_state.params["actor"]["params"].items() if k != "log_std"}}
        else:
            expected = src_state.params["actor"]
            np.testing.assert_array_equal(got.params["log_temp"], fresh.params["log_temp"])
        jax.tree.map(np.testing.assert_array_equal, got.params["actor"], expected)


def test_cql_lagrange_handover_keeps_alpha_prime():
    src = make_learner("cql", OBS, ACT, {**TINY, "cql_lagrange": True})
    src_state = perturbed_state(src)
    dst = make_learner("calql", OBS, ACT, {**TINY, "cql_lagrange": True})
    got = dst.transfer(jax.random.PRNGKey(1), src_state, src)
    np.testing.assert_array_equal(got.params["log_alpha_prime"], src_state.params["log_alpha_prime"])
    jax.tree.map(np.testing.assert_array_equal, got.params["critic"], src_state.params["critic"])
    # to SAC: every shared group copied, alpha' dropped
    to_sac = make_learner("sac", OBS, ACT, TINY).transfer(jax.random.PRNGKey(1), src_state, src)
    assert "log_alpha_prime" not in to_sac.params
    jax.tree.map(np.testing.assert_array_equal, to_sac.params["target_critic"], src_state.params["target_critic"])
