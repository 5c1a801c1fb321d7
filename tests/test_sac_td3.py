"""SAC and TD3 losses against an independent float64 NumPy computation (docs/algorithms.md, SAC and TD3).

A tiny network (obs_dim 3, act_dim 2, hidden (4, 4), 2 critics, batch 5) with fixed weights is
evaluated by hand in NumPy (relu MLP; ensemble kernels are (E, in, out)); stochastic parts are
reproduced from the key (distrax's diagonal Gaussian draws ``jax.random.normal(key, (1, B, A))``,
checked separately below), tanh-Gaussian log-probs are computed by hand. The batch has a
``terminated`` row (bootstrapping cut) and a ``truncated`` row (bootstrapping kept).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from np_reference import f64, np_det_actor, np_gaussian, np_q
from smac_jax import networks
from smac_jax.learners import make_learner
from smac_jax.learners import sac as sac_mod
from smac_jax.learners import td3 as td3_mod
from smac_jax.learners.base import polyak
from smac_jax.networks.actors import TanhGaussian
from smac_jax.types import Transitions

OBS, ACT, B, HID = 3, 2, 5, (4, 4)
RTOL, ATOL = 1e-4, 1e-5
TERM_ROW, TRUNC_ROW = 1, 2


# ---------------------------------------------------------------------------------------------
# Independent NumPy forward passes
# ---------------------------------------------------------------------------------------------
def np_tanh_gaussian_sample(mean, log_std, eps):
    """a = tanh(u), u = mean + std * eps; log pi(a) = log N(u) - sum log(1 - tanh(u)^2)."""
    std = np.exp(log_std)
    u = mean + std * eps
    log_n = (-0.5 * eps**2 - log_std - 0.5 * np.log(2.0 * np.pi)).sum(-1)
    log_det = np.log(1.0 - np.tanh(u) ** 2).sum(-1)
    return np.tanh(u), log_n - log_det


def gaussian_noise(key, batch=B, act=ACT):
    """The standard-normal draw distrax's MultivariateNormalDiag makes for ``sample(seed=key)``."""
    return f64(jax.random.normal(key, (1, batch, act))[0])


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
def perturb(tree, key, scale):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    )


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    term = np.zeros(B, np.float32)
    trunc = np.zeros(B, np.float32)
    term[TERM_ROW] = 1.0
    trunc[TRUNC_ROW] = 1.0
    return Transitions(
        obs=jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(B, ACT)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=B), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32),
        terminated=jnp.asarray(term),
        truncated=jnp.asarray(trunc),
        episode=jnp.zeros(B, jnp.int32),
        rtg=jnp.zeros(B, jnp.float32),
        mc_return=jnp.zeros(B, jnp.float32),
        traj_return=jnp.zeros(B, jnp.float32),
    )


@pytest.fixture(scope="module")
def sac():
    learner = make_learner("sac", OBS, ACT, dict(hidden_dims=HID, gamma=0.9, tau=0.1))
    state = jax.jit(learner.init)(jax.random.PRNGKey(1))
    params = dict(state.params)
    # Distinct target critic, a non-trivial temperature, and biases that are not zero.
    params["actor"] = perturb(params["actor"], jax.random.PRNGKey(2), 0.3)
    params["critic"] = perturb(params["critic"], jax.random.PRNGKey(3), 0.3)
    params["target_critic"] = perturb(params["critic"], jax.random.PRNGKey(4), 0.3)
    params["log_temp"] = jnp.asarray(np.log(0.3), jnp.float32)
    return learner, state.replace(params=params)


@pytest.fixture(scope="module")
def td3():
    cfg = dict(hidden_dims=HID, gamma=0.9, tau=0.1, target_noise=0.5, noise_clip=0.3)
    learner = make_learner("td3", OBS, ACT, cfg)
    state = jax.jit(learner.init)(jax.random.PRNGKey(5))
    params = dict(state.params)
    params["actor"] = perturb(params["actor"], jax.random.PRNGKey(6), 0.3)
    tgt = perturb(params["actor"], jax.random.PRNGKey(7), 0.3)
    # Saturate the target actor so that the clip of a' to [-1, 1] is exercised.
    tgt["params"]["mean"]["kernel"] = tgt["params"]["mean"]["kernel"] * 6.0
    params["target_actor"] = tgt
    critic = perturb(params["critic"], jax.random.PRNGKey(8), 0.3)
    # Make Q_1 the larger critic, so that Q_1 and min_i Q_i differ (the actor loss uses Q_1).
    out_b = critic["params"]["q"]["mlp"]["out"]["bias"]
    critic["params"]["q"]["mlp"]["out"]["bias"] = out_b.at[0].add(1.0)
    params["critic"] = critic
    params["target_critic"] = perturb(params["critic"], jax.random.PRNGKey(9), 0.3)
    return learner, state.replace(params=params)


# ---------------------------------------------------------------------------------------------
# The noise convention the hand computations rely on
# ---------------------------------------------------------------------------------------------
def test_distrax_tanh_gaussian_sampling_convention():
    rng = np.random.default_rng(1)
    loc = jnp.asarray(rng.normal(size=(B, ACT)), jnp.float32)
    log_std = jnp.asarray(rng.normal(size=(B, ACT)) * 0.5, jnp.float32)
    key = jax.random.PRNGKey(42)
    a, logp = TanhGaussian(loc, jnp.exp(log_std)).sample_and_log_prob(seed=key)
    a_ref, logp_ref = np_tanh_gaussian_sample(f64(loc), f64(log_std), gaussian_noise(key))
    np.testing.assert_allclose(a, a_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(logp, logp_ref, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------
# SAC
# ---------------------------------------------------------------------------------------------
def np_sac_target(params, batch, key, gamma, backup_entropy=True):
    mean, log_std = np_gaussian(params["actor"], batch.next_obs)
    a2, logp2 = np_tanh_gaussian_sample(mean, log_std, gaussian_noise(key))
    q2 = np_q(params["target_critic"], batch.next_obs, a2).min(0)
    if backup_entropy:
        q2 = q2 - np.exp(f64(params["log_temp"])) * logp2
    # terminated cuts bootstrapping, truncated does not.
    return f64(batch.reward) + gamma * (1.0 - f64(batch.terminated)) * q2


def check_critic_loss(loss, info, y, critic, batch, y_jax):
    """The ensemble TD loss sum_i mean_b (Q_i - y)^2 and its target against the reference ``y``;
    the terminated row's target is the bare reward, the truncated row still bootstraps. Returns Q."""
    q = np_q(critic, batch.obs, batch.action)
    np.testing.assert_allclose(float(loss), ((q - y[None]) ** 2).mean(1).sum(), rtol=RTOL)
    np.testing.assert_allclose(float(info["target_mean"]), y.mean(), rtol=RTOL, atol=ATOL)
    y_jax = np.asarray(y_jax)
    np.testing.assert_allclose(y_jax, y, rtol=RTOL, atol=ATOL)
    assert y_jax[TERM_ROW] == pytest.approx(float(batch.reward[TERM_ROW]), abs=1e-6)
    assert abs(y_jax[TRUNC_ROW] - float(batch.reward[TRUNC_ROW])) > 1e-3
    return q


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_sac_critic_loss(sac, batch, backup_entropy):
    learner, state = sac
    cfg = learner.config.copy_and_resolve_references()
    cfg.backup_entropy = backup_entropy
    key = jax.random.PRNGKey(11)
    loss, info = sac_mod.critic_loss(state.params, batch, key, cfg)

    y = np_sac_target(state.params, batch, key, cfg.gamma, backup_entropy)
    q = check_critic_loss(loss, info, y, state.params["critic"], batch,
                          sac_mod.td_target(state.params, batch, key, cfg))
    np.testing.assert_allclose(float(info["q_mean"]), q.mean(), rtol=RTOL, atol=ATOL)


def test_sac_critic_loss_gradient_stops_at_target(sac, batch):
    """d loss / d critic = sum_i mean_b 2 (Q_i - y) dQ_i: y contributes nothing."""
    learner, state = sac
    key = jax.random.PRNGKey(12)
    y = sac_mod.td_target(state.params, batch, key, learner.config)
    g = jax.grad(lambda c: sac_mod.critic_loss({**state.params, "critic": c}, batch, key, learner.config)[0])(
        state.params["critic"]
    )
    qfn = lambda c: networks.critic_net(learner.config).apply(c, batch.obs, batch.action)
    g_ref = jax.grad(lambda c: ((qfn(c) - jax.lax.stop_gradient(y)[None]) ** 2).mean(1).sum())(state.params["critic"])
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sac_actor_loss(sac, batch):
    learner, state = sac
    key = jax.random.PRNGKey(13)
    loss, info = sac_mod.actor_loss(state.params, batch, key, learner.config)
    mean, log_std = np_gaussian(state.params["actor"], batch.obs)
    a, logp = np_tanh_gaussian_sample(mean, log_std, gaussian_noise(key))
    q = np_q(state.params["critic"], batch.obs, a).min(0)
    ref = (np.exp(f64(state.params["log_temp"])) * logp - q).mean()
    np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(info["entropy"]), -logp.mean(), rtol=RTOL, atol=ATOL)
    # The temperature is a constant for the actor loss.
    g_t = jax.grad(lambda t: sac_mod.actor_loss({**state.params, "log_temp": t}, batch, key, learner.config)[0])(
        state.params["log_temp"]
    )
    assert float(g_t) == 0.0


def test_sac_temperature_loss(sac, batch):
    learner, state = sac
    key = jax.random.PRNGKey(14)
    loss, info = sac_mod.temperature_loss(state.params, batch, key, learner.config)
    mean, log_std = np_gaussian(state.params["actor"], batch.obs)
    _, logp = np_tanh_gaussian_sample(mean, log_std, gaussian_noise(key))
    temp = np.exp(f64(state.params["log_temp"]))
    target_entropy = -float(ACT)  # SAC's default: -|A|
    ref = temp * (-logp.mean() - target_entropy)
    np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(info["temperature"]), temp, rtol=1e-6)
    # d/d log_temp = T * (H - target); no gradient reaches the actor.
    g_t = jax.grad(lambda t: sac_mod.temperature_loss({**state.params, "log_temp": t}, batch, key, learner.config)[0])(
        state.params["log_temp"]
    )
    np.testing.assert_allclose(float(g_t), ref, rtol=RTOL, atol=ATOL)
    g_a = jax.grad(lambda p: sac_mod.temperature_loss({**state.params, "actor": p}, batch, key, learner.config)[0])(
        state.params["actor"]
    )
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g_a))


def test_sac_act_deterministic_is_tanh_mean(sac, batch):
    learner, state = sac
    a = learner.act(state, batch.obs, jax.random.PRNGKey(0), True)
    mean, _ = np_gaussian(state.params["actor"], batch.obs)
    np.testing.assert_allclose(a, np.tanh(mean), rtol=RTOL, atol=ATOL)
    # Stochastic actions: tanh(mean + std * eps) with distrax's draw.
    key = jax.random.PRNGKey(3)
    a_s = learner.act(state, batch.obs, key, False)
    mean, log_std = np_gaussian(state.params["actor"], batch.obs)
    np.testing.assert_allclose(a_s, np_tanh_gaussian_sample(mean, log_std, gaussian_noise(key))[0], rtol=RTOL, atol=ATOL)


def test_sac_update_polyak_and_temperature(sac, batch):
    """After one update: target = tau * new critic + (1 - tau) * old target; every group moved."""
    learner, state = sac
    new, metrics = jax.jit(learner.update)(state, batch, jax.random.PRNGKey(15))
    tau = learner.config.tau
    for t_new, c_new, t_old in zip(
        jax.tree.leaves(new.params["target_critic"]),
        jax.tree.leaves(new.params["critic"]),
        jax.tree.leaves(state.params["target_critic"]),
    ):
        np.testing.assert_allclose(t_new, tau * f64(c_new) + (1 - tau) * f64(t_old), rtol=1e-5, atol=1e-6)
    for g in ("actor", "critic", "log_temp"):
        assert any(
            not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params[g]), jax.tree.leaves(state.params[g]))
        ), g
    assert int(new.step) == int(state.step) + 1
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())


def test_polyak_math():
    target = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(-4.0)}
    online = {"w": jnp.array([3.0, -2.0]), "b": jnp.array(6.0)}
    out = polyak(target, online, 0.25)
    np.testing.assert_allclose(out["w"], [1.5, 1.0])  # 0.25 * online + 0.75 * target
    np.testing.assert_allclose(out["b"], -1.5)


# ---------------------------------------------------------------------------------------------
# TD3
# ---------------------------------------------------------------------------------------------
def test_td3_critic_loss(td3, batch):
    learner, state = td3
    cfg = learner.config
    key = jax.random.PRNGKey(21)
    loss, info = td3_mod.critic_loss(state.params, batch, key, cfg)

    a2 = np_det_actor(state.params["target_actor"], batch.next_obs)
    raw_noise = cfg.target_noise * f64(jax.random.normal(key, (B, ACT)))
    noise = np.clip(raw_noise, -cfg.noise_clip, cfg.noise_clip)
    a2_noisy = np.clip(a2 + noise, -1.0, 1.0)
    # Both clips must be active on this batch, or the test could not see them missing.
    assert (np.abs(raw_noise) > cfg.noise_clip).any()
    assert (np.abs(a2 + noise) > 1.0).any()
    q2 = np_q(state.params["target_critic"], batch.next_obs, a2_noisy).min(0)
    y = f64(batch.reward) + cfg.gamma * (1.0 - f64(batch.terminated)) * q2
    check_critic_loss(loss, info, y, state.params["critic"], batch, td3_mod.td_target(state.params, batch, key, cfg))


def test_td3_actor_loss(td3, batch):
    learner, state = td3
    loss, _ = td3_mod.actor_loss(state.params, batch, jax.random.PRNGKey(22), learner.config)
    a = np_det_actor(state.params["actor"], batch.obs)
    q = np_q(state.params["critic"], batch.obs, a)
    ref = -q[0].mean()  # the first critic, as in TD3
    np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
    assert abs(ref - (-q.min(0).mean())) > 1e-4  # the test can tell Q_1 from min_i Q_i


def test_td3_act(td3, batch):
    learner, state = td3
    a = learner.act(state, batch.obs, jax.random.PRNGKey(0), True)
    np.testing.assert_allclose(a, np_det_actor(state.params["actor"], batch.obs), rtol=RTOL, atol=ATOL)
    key = jax.random.PRNGKey(1)
    a_s = learner.act(state, batch.obs, key, False)
    ref = np.clip(np_det_actor(state.params["actor"], batch.obs) + 0.1 * f64(jax.random.normal(key, (B, ACT))), -1, 1)
    np.testing.assert_allclose(a_s, ref, rtol=RTOL, atol=ATOL)


def test_td3_policy_delay(td3, batch):
    """Actor and targets change on steps 0, 2, 4, ... only; the critic changes on every step."""
    learner, state = td3
    assert learner.config.policy_delay == 2
    update = jax.jit(learner.update)
    tau = learner.config.tau
    prev = state
    for i in range(4):
        new, _ = update(prev, batch, jax.random.PRNGKey(100 + i))
        same = lambda g: all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params[g]), jax.tree.leaves(prev.params[g]))
        )
        assert not same("critic"), i
        if i % 2 == 0:
            assert not same("actor") and not same("target_actor") and not same("target_critic"), i
            for g_t, g in (("target_actor", "actor"), ("target_critic", "critic")):
                for t_new, o_new, t_old in zip(
                    jax.tree.leaves(new.params[g_t]), jax.tree.leaves(new.params[g]), jax.tree.leaves(prev.params[g_t])
                ):
                    np.testing.assert_allclose(t_new, tau * f64(o_new) + (1 - tau) * f64(t_old), rtol=1e-5, atol=1e-6)
        else:
            assert same("actor") and same("target_actor") and same("target_critic"), i
            for a, b in zip(jax.tree.leaves(new.opt_state["actor"]), jax.tree.leaves(prev.opt_state["actor"])):
                np.testing.assert_array_equal(a, b)
        assert int(new.step) == i + 1
        prev = new


def test_critic_member_equals_ensemble_slice():
    """Q_i computed alone equals member i of the ensemble's output (LayerNorm critic, 3 members)."""
    cfg = make_learner("td3", OBS, ACT, dict(hidden_dims=HID, num_critics=3, critic_layer_norm=True)).config
    rng = np.random.default_rng(3)
    obs = jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32)
    act = jnp.asarray(rng.uniform(-1, 1, size=(B, ACT)), jnp.float32)
    params = perturb(networks.critic_net(cfg).init(jax.random.PRNGKey(0), obs, act), jax.random.PRNGKey(1), 0.3)
    full = networks.critic_net(cfg).apply(params, obs, act)
    for i in range(3):
        np.testing.assert_allclose(networks.critic_member(cfg, params, obs, act, i), full[i], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["td3bc"])  # TD3BC.update_phase runs TD3.update_phase
def test_offline_step_phased_updates_equal_plain_updates(name, batch):
    """The offline loop's phased program (delayed actor skipped where it is discarded) gives the
    updates of a plain loop over ``learner.update``; a state whose step is not a multiple of
    ``policy_delay`` takes the plain path and gives them too."""
    from smac_jax.data import replay
    from smac_jax.training.steps import make_offline_step

    cfg = dict(hidden_dims=HID, batch_size=8, critic_layer_norm=True)
    if name == "td3bc":
        cfg.update(bc_decay="linear", bc_decay_steps=6)
    learner = make_learner(name, OBS, ACT, cfg)
    data = batch
    seed_keys = jax.random.split(jax.random.PRNGKey(7), 2)
    n_updates = 4
    update = jax.jit(learner.update)

    def reference(state, seed_key, step):
        for k in jax.random.split(jax.random.fold_in(seed_key, step), n_updates):
            k_b, k_u = jax.random.split(k)
            state, _ = update(state, replay.sample_transitions(data, k_b, learner.config.batch_size), k_u)
        return state

    step_fn = make_offline_step(learner, n_updates)
    for start in (0, 1):  # aligned: phased path; misaligned: plain path
        one = jax.jit(learner.init)(jax.random.PRNGKey(1))
        one = one.replace(step=jnp.asarray(start, jnp.int32))
        states = jax.tree.map(lambda x: jnp.stack([x, x]), one)
        out, metrics = step_fn(states, data, seed_keys, 3)
        for s in range(2):
            ref = reference(one, seed_keys[s], 3)
            got = jax.tree.map(lambda x: x[s], out)
            assert int(got.step) == start + n_updates
            for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(ref.params)):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert np.isfinite(float(metrics["actor_loss"][0]))
