"""ACA (docs/aca.md) and SAC+ML's state baseline Z.

* Right after the hand-over Q(s, a) = min_i Z_i(s) + C(log pi_0(a|s)) on random states and actions,
  C recomputed in float64 NumPy; under that critic the SAC actor loss is stationary at pi_0 (its
  gradient there is small next to the gradient at a perturbed policy, and next to the offline
  critic's gradient at pi_0).
* The beta-clip, c_beta (pre-tanh, with the tanh Jacobian), the k schedule and the baseline loss
  against float64 NumPy; SAC+ML's other losses are unchanged by the baseline.
* A jitted, seed-vmapped update with finite metrics; the actor's gradient-norm clip; hand-over
  from sources without Z (fitted, or the critic copied); a deterministic source is a TransferError.

The NumPy references reuse the tiny-network helpers of tests/test_learners_cql_family.py.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_o2o_config_module
from test_learners_cql_family import (
    ACT, OBS, TINY, f64, make_batch, np_actor, np_data_logp, np_gauss_logp, np_mlp, np_sample, perturbed_state,
)

from smac_jax import networks
from smac_jax.learners import ConfigError, TransferError, get_learner_class, make_learner, sac
from smac_jax.learners import aca
from smac_jax.learners import sacml
from smac_jax.types import Transitions

RTOL, ATOL = 1e-4, 1e-5
#: XLA options of the jitted programs here: no LLVM optimisation (compile time dominates; the
#: checks are about values, not speed).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compiled(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` with ``COMPILER_OPTIONS`` (then called on like arguments)."""
    return jax.jit(fn).lower(*args).compile(compiler_options=COMPILER_OPTIONS)


def run_jit(fn, *args):
    """``jax.jit(fn)(*args)``, compiled with ``COMPILER_OPTIONS``."""
    return compiled(fn, *args)(*args)


# ---------------------------------------------------------------------------------------------
# float64 NumPy references
# ---------------------------------------------------------------------------------------------
def np_log_sech2(u):
    """log(1 - tanh(u)^2) = 2 (log 2 - |u| - log(1 + exp(-2|u|))), summed over the action axis."""
    au = np.abs(f64(u))
    return (2.0 * (np.log(2.0) - au - np.log1p(np.exp(-2.0 * au)))).sum(-1)


def np_logp0(actor0, obs, u):
    mean, log_std = np_actor(actor0, obs)
    return np_gauss_logp(f64(u), mean, log_std) - np_log_sech2(u)


def np_c_beta(actor0, obs, beta):
    mean, log_std = np_actor(actor0, obs)
    sigma = np.exp(log_std)
    return np.minimum(np_logp0(actor0, obs, mean - beta * sigma), np_logp0(actor0, obs, mean + beta * sigma))


def np_alignment(actor0, obs, u, beta, k):
    """C = k (softplus(log pi_0 - c_beta) + c_beta)."""
    x, c = np_logp0(actor0, obs, u), np_c_beta(actor0, obs, beta)
    return k * (np.logaddexp(0.0, x - c) + c)


def np_values(params, obs):
    """(E, B) state values of a ValueEnsemble (Z)."""
    layers = params["params"]["v"]["mlp"]
    return np.stack([np_mlp(layers, f64(obs), e)[..., 0] for e in range(f64(layers["out"]["bias"]).shape[0])])


def np_k_schedule(k0, k_min, step, n):
    ks, k = [], k0
    for _ in range(n):
        k = max(k - step, k_min)
        ks.append(k)
    return np.array(ks)


# ---------------------------------------------------------------------------------------------
# fixtures (every computation jitted: op-by-op execution compiles every primitive on its own)
# ---------------------------------------------------------------------------------------------
def perturbed(learner, seed=0):
    """``perturbed_state``: temperature 0.3, every parameter group away from its initialisation."""
    return run_jit(lambda: perturbed_state(learner, seed))


@functools.cache
def sacml_state():
    """A SAC+ML learner and a perturbed state of it, shared by the tests (computed once)."""
    learner = make_learner("sacml", OBS, ACT, TINY)
    return learner, perturbed(learner)


@functools.cache
def aca_params():
    """Perturbed ACA parameters (pi_0 different from the actor), shared by the tests."""
    return perturbed(make_learner("aca", OBS, ACT, TINY)).params


def handed_over(on, off, off_state):
    """ACA's state right after the hand-over from ``off_state``."""
    return run_jit(lambda s: on.transfer(jax.random.PRNGKey(1), s, off), off_state)


def narrow_actor(actor, log_std=-1.5):
    """The actor with its log-std output near ``log_std`` (a trained policy's scale)."""
    head = actor["params"]["log_std"]
    return {"params": {**actor["params"], "log_std": {
        "kernel": 0.1 * head["kernel"], "bias": jnp.full_like(head["bias"], log_std)}}}


def random_batch(n, seed=0, obs_scale=1.0):
    rng = np.random.default_rng(seed)
    f = lambda x: jnp.asarray(x, jnp.float32)
    action = rng.uniform(-1.0, 1.0, (n, ACT))
    action[0] = [1.0, -1.0]  # the boundary
    return Transitions(
        obs=f(obs_scale * rng.normal(size=(n, OBS))), action=f(action), reward=f(rng.normal(size=n)),
        next_obs=f(rng.normal(size=(n, OBS))), terminated=f(rng.integers(0, 2, n)), truncated=f(np.zeros(n)),
        episode=jnp.asarray(np.arange(n) // 10, jnp.int32), rtg=f(np.zeros(n)),
        mc_return=f(np.full(n, -np.inf)), traj_return=f(rng.normal(size=n)),
    )


# ---------------------------------------------------------------------------------------------
# registration, presets, config
# ---------------------------------------------------------------------------------------------
def test_registered_presets_and_o2o_config():
    assert get_learner_class("aca") is aca.ACA
    c = make_learner("aca", OBS, ACT).config
    assert (c.preset, c.actor_grad_clip, c.init_temperature, c.k_decay) == ("medium-replay", 0.25, 1.0, "span")
    assert aca.hyperparameters(c) == dict(beta=7.0, k_start=1.0, k_decay_episodes=40.0, k_min=0.5)
    expert = make_learner("aca", OBS, ACT, {"preset": "expert", "beta": 10.0}).config
    assert aca.hyperparameters(expert) == dict(beta=10.0, k_start=1.0, k_decay_episodes=100.0, k_min=1.0)
    assert {p: v["replay_top_n"] for p, v in aca.PRESETS.items()} == {
        "random": 0, "medium": 0, "medium-replay": 50, "medium-expert": 50, "expert": 50}
    with pytest.raises(ConfigError, match="preset"):
        make_learner("aca", OBS, ACT, {"preset": "medium_replay"})
    with pytest.raises(ConfigError, match="k_min"):
        make_learner("aca", OBS, ACT, {"k_min": 2.0})
    assert make_learner("sacml", OBS, ACT).config.train_baseline is True

    # The documented command's config (hopper: 11-dim observations, 3-dim actions) builds both learners.
    mod = load_o2o_config_module()
    assert mod.ONLINE_LEARNER_DEFAULTS["aca"] == {"replay.init": "top_n", "replay.top_n": 50}
    cfg = mod.get_config("hopper,sacml,aca")
    assert (cfg.online.replay.init, cfg.online.replay.top_n) == ("top_n", 50)
    off = make_learner(cfg.offline.learner, 11, 3, cfg.offline.agent)
    on = make_learner(cfg.online.learner, 11, 3, cfg.online.agent)
    state = jax.eval_shape(lambda k: on.transfer(k, off.init(k), off), jax.random.PRNGKey(0))
    assert state.params["critic"]["params"]["q"]["mlp"]["dense_0"]["kernel"].shape == (2, 14, 128)


# ---------------------------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------------------------
def test_aligned_critic_is_baseline_plus_clipped_log_pi0():
    off, off_state = sacml_state()
    on = make_learner("aca", OBS, ACT, TINY)
    st = handed_over(on, off, off_state)
    p, src = st.params, off_state.params
    jax.tree.map(np.testing.assert_array_equal, p["actor"], src["actor"])
    jax.tree.map(np.testing.assert_array_equal, p["actor0"], src["actor"])
    jax.tree.map(np.testing.assert_array_equal, p["target_critic"], p["critic"])
    assert float(p["log_temp"]) == 0.0 and float(p["k"]) == 1.0  # temperature reset to 1, k = c0
    counts = [x for path, x in jax.tree_util.tree_flatten_with_path(st.opt_state)[0] if "count" in jax.tree_util.keystr(path)]
    assert counts and all(int(c) == 0 for c in counts)

    b = random_batch(64, obs_scale=2.0)
    q, r = run_jit(lambda p, b: (aca.aligned_q(p, b.obs, b.action, on.config),
                                 networks.critic_net(on.config).apply(p["critic"], b.obs, b.action)), p, b)
    z = np_values(src["baseline"], b.obs)  # (E, B)
    u = np.arctanh(np.clip(np.asarray(b.action), np.float32(-1 + 1e-6), np.float32(1 - 1e-6)))
    want = z.min(0) + np_alignment(src["actor"], b.obs, u, beta=7.0, k=1.0)
    np.testing.assert_allclose(q, want, rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(r, z, rtol=1e-5, atol=1e-5)  # every R_i is Z_i, whatever the action


def test_actor_gradient_vanishes_at_pi0_under_the_aligned_critic():
    """With k = 1 and T = 1 the actor loss is KL(pi || pi_0) - Z where the clip does not bind:
    stationary at pi_0. (The policy's scale is set to a trained policy's, sigma ~ 0.2: with sigma
    near e^2 the tanh Jacobian lifts c_beta above most samples' log pi_0 and the clip binds.)"""
    off, off_state = sacml_state()
    off_state = off_state.replace(params={**off_state.params, "actor": narrow_actor(off_state.params["actor"])})
    on = make_learner("aca", OBS, ACT, TINY)
    st = handed_over(on, off, off_state)
    batch = random_batch(4096, seed=3)
    key = jax.random.PRNGKey(5)

    def grad_norms(aca_params, off_params, perturbed_actor):
        def aca_grad(actor):
            loss = lambda a: aca.actor_loss({**aca_params, "actor": a}, batch, key, on.config)[0]
            return optax.global_norm(jax.grad(loss)(actor))

        u, _ = aca.sample_pre_tanh(aca.actor_dist(on.config, ACT, aca_params["actor"], batch.obs), key)
        clip_frac = aca.alignment_term(aca_params, batch.obs, u, on.config)[1]["clip_frac"]
        off_params = {**off_params, "log_temp": jnp.zeros(())}  # the offline critic, temperature 1
        g_off = jax.grad(lambda a: sac.actor_loss({**off_params, "actor": a}, batch, key, on.config)[0])(
            off_params["actor"])
        return aca_grad(aca_params["actor"]), aca_grad(perturbed_actor), optax.global_norm(g_off), clip_frac

    mean = st.params["actor"]["params"]["mean"]
    shifted = {"params": {**st.params["actor"]["params"], "mean": {**mean, "bias": mean["bias"] + 0.5}}}
    g_pi0, g_perturbed, g_offline, clip_frac = run_jit(grad_norms, st.params, off_state.params, shifted)
    assert float(clip_frac) < 0.01  # pi_0's samples lie inside the beta-band: C = log pi_0 there
    assert g_pi0 < 0.2 * g_perturbed, (g_pi0, g_perturbed)
    assert g_pi0 < 0.2 * g_offline, (g_pi0, g_offline)


@pytest.mark.parametrize("preset,k,narrow", [("medium-replay", 1.0, False), ("expert", 0.7, True)])
def test_c_beta_and_soft_clip_match_numpy(preset, k, narrow):
    """Wide policies (log-std up to 2) exercise the tanh Jacobian far out; narrow ones the clip's two ends."""
    on = make_learner("aca", OBS, ACT, {**TINY, "preset": preset})
    params = {**aca_params(), "k": jnp.asarray(k, jnp.float32)}
    if narrow:
        params["actor0"] = narrow_actor(params["actor0"])
    beta = aca.hyperparameters(on.config)["beta"]
    obs = make_batch(1).obs
    mean, log_std = np_actor(params["actor0"], obs)
    sigma = np.exp(log_std)
    # Inside, at and far outside the beta-band, and where tanh saturates in float32.
    us = np.stack([mean, mean + 0.5 * sigma, mean - beta * sigma, mean + (beta + 3.0) * sigma, mean + 12.0,
                   mean + 3 * beta * sigma])
    c, c_beta = run_jit(lambda p, u: (jax.vmap(lambda uu: aca.alignment_term(p, obs, uu, on.config)[0])(u),
                                      aca.c_beta(aca.actor_dist(on.config, ACT, p["actor0"], obs), beta)),
                        params, jnp.asarray(us, jnp.float32))
    cb = np_c_beta(params["actor0"], obs, beta)
    np.testing.assert_allclose(c_beta, cb, rtol=RTOL, atol=ATOL)
    assert np.isfinite(np.asarray(c)).all()
    cases = set()
    for u, c_u in zip(us, np.asarray(c)):
        np.testing.assert_allclose(c_u, np_alignment(params["actor0"], obs, u, beta, k), rtol=RTOL, atol=1e-4)
        # The clip: where log pi_0 is far below c_beta, C = k c_beta; far above, C = k log pi_0.
        x = np_logp0(params["actor0"], obs, u)
        for below, rows in ((True, cb - x > 12), (False, x - cb > 12)):
            np.testing.assert_allclose(c_u[rows], k * (cb if below else x)[rows], rtol=1e-5, atol=1e-4)
            if rows.any():
                cases.add(below)
    assert cases == {True, False}


@pytest.mark.parametrize("rule", ["span", "rate"])
def test_k_schedule_matches_numpy(rule):
    cfg = make_learner("aca", OBS, ACT, {"preset": "medium", "k_decay": rule, "k_episode_updates": 2}).config
    n = 100
    ks = run_jit(lambda k: jax.lax.scan(lambda k, _: (aca.next_k(k, cfg),) * 2, k, None, length=n)[1],
                 jnp.float32(1.0))
    step = (1.0 - 0.5) / 80.0 if rule == "span" else 1.0 / 80.0  # c0 = 1, c1 = 40 episodes of 2 updates, c2 = 0.5
    np.testing.assert_allclose(ks, np_k_schedule(1.0, 0.5, step, n), rtol=0, atol=1e-5)
    assert np.argmax(np.asarray(ks) <= 0.5 + 1e-5) + 1 == (80 if rule == "span" else 40)  # updates to reach c2
    # c1 = 0 drops k to c2 at once (here the random preset's 0).
    rnd = make_learner("aca", OBS, ACT, {"preset": "random", "k_decay_episodes": 0.0}).config
    assert aca.k_step(rnd) == math.inf and aca.hyperparameters(rnd)["k_min"] == 0.0


# ---------------------------------------------------------------------------------------------
# SAC+ML's baseline
# ---------------------------------------------------------------------------------------------
BASELINE_VARIANTS = [(False, None), (True, None), (False, 0.0)]  # (baseline_backup_entropy, baseline_logp_floor)


def test_baseline_loss_matches_numpy():
    _, st = sacml_state()
    p = st.params
    batch = make_batch(2)
    key = jax.random.PRNGKey(11)
    cfgs = [make_learner("sacml", OBS, ACT, {**TINY, "baseline_backup_entropy": e, "baseline_logp_floor": f}).config
            for e, f in BASELINE_VARIANTS]

    def losses_and_grads(p):
        out = []
        for cfg in cfgs:
            loss = lambda q, cfg=cfg: sacml.baseline_loss(q, batch, key, cfg)[0]
            out.append((loss(p), jax.grad(lambda a: loss({**p, "actor": a}))(p["actor"]),
                        jax.grad(lambda z: loss({**p, "baseline": z}))(p["baseline"])))
        return out

    z = np_values(p["baseline"], batch.obs)
    _, logp_next = np_sample(p["actor"], batch.next_obs, key)
    results = run_jit(losses_and_grads, p)
    assert len({round(float(r[0]), 3) for r in results}) == 3  # the three variants differ on this batch
    for (entropy, floor), (loss, g_actor, g_z) in zip(BASELINE_VARIANTS, results):
        fl = (lambda x: x) if floor is None else (lambda x: np.maximum(x, floor))
        logp_data = fl(np_data_logp(p["actor"], batch.obs, batch.action))
        next_v = fl(logp_next) + np_values(p["baseline"], batch.next_obs).min(0)
        if entropy:
            next_v = next_v - 0.3 * logp_next
        y = f64(batch.reward) + 0.99 * (1.0 - f64(batch.terminated)) * next_v
        np.testing.assert_allclose(loss, ((logp_data + z - y) ** 2).mean(1).sum(), rtol=RTOL)
        # Only Z gets a gradient (the target and log pi(a_D|s) are under stop-gradient).
        assert max(float(np.abs(x).max()) for x in jax.tree.leaves(g_actor)) == 0.0
        out_bias = 2.0 * (logp_data + z - y).mean(1)  # d loss / d (Z_i's output bias)
        np.testing.assert_allclose(g_z["params"]["v"]["mlp"]["out"]["bias"][:, 0], out_bias, rtol=1e-3, atol=1e-4)


def test_sacml_baseline_leaves_the_other_losses_unchanged():
    with_z, st = sacml_state()
    without = make_learner("sacml", OBS, ACT, {**TINY, "train_baseline": False})
    st_no = st.replace(params={g: v for g, v in st.params.items() if g != "baseline"},
                       opt_state={g: v for g, v in st.opt_state.items() if g != "baseline"})
    batch, key = make_batch(6), jax.random.PRNGKey(3)
    (a, m_a), (b, m_b) = run_jit(lambda s, s_no: (with_z.update(s, batch, key), without.update(s_no, batch, key)),
                                 st, st_no)
    for g in ("actor", "critic", "target_critic", "log_temp"):
        jax.tree.map(np.testing.assert_array_equal, a.params[g], b.params[g])
    assert set(m_a) - set(m_b) == {"baseline_loss", "baseline_mean", "baseline_target_mean"}
    moved = jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a.params["baseline"], st.params["baseline"])
    assert max(jax.tree.leaves(moved)) > 0


# ---------------------------------------------------------------------------------------------
# update, clipping, hand-over
# ---------------------------------------------------------------------------------------------
def test_update_jit_vmap_finite_and_k_decays():
    off = make_learner("sacml", OBS, ACT, TINY)
    on = make_learner("aca", OBS, ACT, {**TINY, "k_episode_updates": 1, "k_decay_episodes": 4.0})
    batch = make_batch(6)  # boundary actions, mc_return -inf rows

    def handover_and_three_updates(keys):  # as the pipeline: vmapped over seeds, updates scanned
        src = jax.vmap(off.init)(keys)
        states = jax.vmap(lambda k, s: on.transfer(k, s, off))(keys, src)
        update_keys = jax.random.split(jax.random.PRNGKey(1), 6).reshape(3, 2, -1)
        step = lambda s, k: jax.vmap(on.update, in_axes=(0, None, 0))(s, batch, k)
        return src, *jax.lax.scan(step, states, update_keys)

    src, states, metrics = run_jit(handover_and_three_updates, jax.random.split(jax.random.PRNGKey(0), 2))
    for k, v in metrics.items():
        assert np.shape(v)[:2] == (3, 2) and np.isfinite(np.asarray(v)).all(), (k, v)
    assert np.asarray(states.step).tolist() == [3, 3]
    np.testing.assert_allclose(states.params["k"], [1.0 - 3 * 0.5 / 4] * 2, rtol=1e-6)  # (c0 - c2) / 4 per update
    np.testing.assert_allclose(metrics["k"][-1], [1.0 - 2 * 0.5 / 4] * 2, rtol=1e-6)  # the k the last update used
    jax.tree.map(np.testing.assert_array_equal, states.params["actor0"], src.params["actor"])  # pi_0 frozen
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), states.params["actor"], src.params["actor"])
    assert max(jax.tree.leaves(moved)) > 0


def test_actor_gradient_norm_clipped():
    on = make_learner("aca", OBS, ACT, TINY)
    opt = on.optimizers()["actor"]

    def first_step(key):
        actor = on.init(key).params["actor"]
        return opt.update(jax.tree.map(lambda x: jnp.full_like(x, 10.0), actor), opt.init(actor), actor)[1]

    state = run_jit(first_step, jax.random.PRNGKey(0))
    adam = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    assert len(adam) == 1  # the first moment is (1 - b1) times the clipped gradient
    np.testing.assert_allclose(optax.global_norm(adam[0].mu), 0.1 * 0.25, rtol=1e-5)


def test_source_without_baseline_fit_or_critic():
    """CQL has no Z: ACA fits one at hand-over (eq. 8-9 with the CQL policy), or copies the critic."""
    cql = make_learner("cql", OBS, ACT, TINY)
    src = perturbed(cql)
    fit = {**TINY, "baseline_fit_lr": 1e-2, "batch_size": 64, "baseline_fit_steps": 300}
    on = make_learner("aca", OBS, ACT, fit)
    with pytest.raises(ConfigError, match=r"cql -> aca: .*prepare"):
        jax.eval_shape(lambda k: on.transfer(k, src, cql), jax.random.PRNGKey(0))
    # Terminal rows at the policy's mode with r = s_0: Z_i(s) -> s_0 - log pi(a(s)|s), a function of s.
    data = random_batch(512, seed=4)
    mode = run_jit(lambda o: aca.actor_dist(cql.config, ACT, src.params["actor"], o).mode(), data.obs)
    data = data.replace(action=mode, reward=data.obs[:, 0], terminated=jnp.ones_like(data.reward))
    on.set_fit_data(data)
    by_critic = make_learner("aca", OBS, ACT, {**TINY, "source_without_baseline": "critic"})

    def handovers_and_losses(src):
        st = on.transfer(jax.random.PRNGKey(0), src, cql)
        mlp = st.params["critic"]["params"]["q"]["mlp"]
        z_fit = {"params": {"v": {"mlp": {**mlp, "dense_0": {**mlp["dense_0"], "kernel": mlp["dense_0"]["kernel"][:, :OBS]}}}}}
        z_fresh = [sacml.baseline_net(on.config).init(jax.random.PRNGKey(i), data.obs[:1]) for i in range(3)]
        losses = [sacml.baseline_loss({"actor": src.params["actor"], "baseline": z}, data, jax.random.PRNGKey(3),
                                      on.config)[0] for z in (z_fit, *z_fresh)]
        return st, jnp.stack(losses), by_critic.transfer(jax.random.PRNGKey(0), src, cql)

    st, losses, st_critic = run_jit(handovers_and_losses, src)
    kernel = st.params["critic"]["params"]["q"]["mlp"]["dense_0"]["kernel"]
    assert kernel.shape == (2, OBS + ACT, 8) and float(np.abs(kernel[:, OBS:]).max()) == 0.0  # R = Z
    jax.tree.map(np.testing.assert_array_equal, st.params["actor0"], src.params["actor"])
    assert losses[0] < 0.3 * losses[1:].min(), losses  # the fitted Z against fresh ones
    # "critic": R is the source critic, C added.
    jax.tree.map(np.testing.assert_array_equal, st_critic.params["critic"], src.params["critic"])


@pytest.mark.parametrize("source,overrides", [("td3bc", {}), ("td3", {}),
                                              ("iql", {"policy_extraction": "deterministic_mean"})])
def test_deterministic_source_is_a_transfer_error(source, overrides):
    off = make_learner(source, OBS, ACT, {**TINY, **overrides})
    on = make_learner("aca", OBS, ACT, TINY)
    with pytest.raises(TransferError, match=rf"{source} -> aca: .*deterministic"):
        jax.eval_shape(lambda k: on.transfer(k, off.init(k), off), jax.random.PRNGKey(0))
