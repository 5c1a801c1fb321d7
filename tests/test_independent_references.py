"""Losses that no other test recomputes independently, against float64 NumPy:

* ACA's critic loss (the target with C(log pi_0) at a' ~ pi(s'), the entropy term on and off) and
  its actor loss (Q = min_i R_i + C at the reparameterised sample);
* SMAC's whole critic loss: SAC's TD loss plus kappa times the score-matching term on the first
  ``sm_batch_size`` states of the batch, with the score from a NumPy forward pass of the eps-network;
* the score model's eps-network forward pass and its DDPM loss (dropout 0);
* SAMG: the C-VAE's ELBO, the Gaussian KL (against numerical integration), the weighted latent
  normals, and ``samg_cql``'s guided TD target with CQL's max backup.

Tiny networks (obs 3, act 2, hidden (8, 8), 2 critics, batch 5 with one terminated row) with every
parameter drawn at random, independently, so online, target and frozen networks (pi_0, the offline
critic) all differ. The forward passes are tests/np_reference.py's; the random draws are
reproduced with ``jax.random`` from the keys the library uses (a tanh-Gaussian draw with key k and n
samples is tanh(mu + sigma * normal(k, (n, B, A))), n = 1 for a single sample); everything else is
recomputed here in float64. Values agree to a relative 1e-5 (float32 library). For ACA and SMAC,
``jax.grad`` of the loss w.r.t. one parameter group is compared with central differences of the
NumPy loss over every entry of that group.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from np_reference import (
    f64, np_eps_network, np_gaussian, np_mlp, np_q, np_q_action_grad, np_tanh_gaussian_logp,
)
from smac_jax.learners import aca, cql, make_learner, samg, smac
from smac_jax.samg import confidence, cvae
from smac_jax.score import model as sm
from smac_jax.types import Transitions

OBS, ACT, B, HID = 3, 2, 5, (8, 8)
TERM_ROW = 1
#: max |library - reference| / max |reference|; for gradients max |jax.grad - central difference| /
#: max |central difference| over a parameter group
RTOL = 1e-5
BETA = 5.0  # ACA's beta-clip width (set explicitly, not the preset's)
SM_BATCH = 3  # SMAC's sm_batch_size: the matching term uses the first 3 of the 5 states
SCORE_CONFIG = {"hidden_dim": 8, "n_blocks": 1, "time_dim": 4, "time_mlp_dim": 8}
P_THRESHOLD = 0.6  # SAMG's p_m


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
#: XLA options of the jitted library calls: no LLVM optimisation (compile time dominates here).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_jit(fn, *args):
    """``jax.jit(fn)(*args)``, compiled with ``COMPILER_OPTIONS`` (a few programs compile faster
    than the many small ones of op-by-op execution)."""
    return jax.jit(fn).lower(*args).compile(compiler_options=COMPILER_OPTIONS)(*args)


def random_params(init_fn, seed):
    """Float32 parameters of the structure ``init_fn(key)`` returns (traced only, with
    ``jax.eval_shape``: compiling every initialiser would cost more than the checks), each leaf
    drawn independently, so online, target and frozen copies differ: kernels (and the Fourier
    frequencies) N(0, 1 / fan_in), LayerNorm scales 1 + N(0, 0.3^2), everything else N(0, 0.3^2)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = str(getattr(path[-1], "key", "")), leaf.shape
        if name in ("kernel", "freqs"):
            x = rng.normal(size=shape) / np.sqrt(shape[-2])
        elif name == "scale":
            x = 1.0 + 0.3 * rng.normal(size=shape)
        else:
            x = 0.3 * rng.normal(size=shape)
        return jnp.asarray(x, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(init_fn, jax.random.PRNGKey(0)))


def tree64(tree):
    return jax.tree.map(f64, tree)


def rel_err(lib, ref) -> float:
    lib, ref = f64(lib), f64(ref)
    assert lib.shape == ref.shape, (lib.shape, ref.shape)
    return float(np.max(np.abs(lib - ref)) / max(np.max(np.abs(ref)), 1e-12))


def assert_close(lib, ref, rtol=RTOL):
    err = rel_err(lib, ref)
    assert err <= rtol, (f"relative error {err:.3g} > {rtol} "
                         f"(library {np.ravel(lib)[:4]}, reference {np.ravel(ref)[:4]})")


def assert_grad_close(lib_grad, fd_grad, rtol=RTOL):
    lib, fd = (np.concatenate([f64(x).ravel() for x in jax.tree.leaves(t)]) for t in (lib_grad, fd_grad))
    assert np.max(np.abs(fd)) > 1e-3, "the group's gradient vanishes: nothing is checked"
    assert_close(lib, fd, rtol)


def fd_grad(loss, tree, h=1e-6):
    """Central differences of the float64 ``loss(tree)`` w.r.t. every entry of ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    grads = []
    for i, leaf in enumerate(leaves):
        g = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            vals = []
            for step in (h, -h):
                moved = leaf.copy()
                moved[idx] += step
                vals.append(loss(jax.tree.unflatten(treedef, leaves[:i] + [moved] + leaves[i + 1:])))
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        grads.append(g)
    return jax.tree.unflatten(treedef, grads)


def std_normal(key, shape, n=None):
    """The standard-normal draw behind distrax's ``sample(seed=key)`` (n None) or
    ``sample(seed=key, sample_shape=(n,))`` of a diagonal Gaussian with batch shape ``shape``."""
    z = f64(jax.random.normal(key, (1 if n is None else n,) + tuple(shape)))
    return z[0] if n is None else z


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_td_target(b, cfg, log_temp, u, mean, log_std, next_q):
    """r + gamma (1 - terminated) [next_q - T log pi(tanh u|s')] (the entropy term only with backup_entropy)."""
    if cfg.backup_entropy:
        next_q = next_q - np.exp(log_temp) * np_tanh_gaussian_logp(u, mean, log_std)
    return f64(b.reward) + cfg.gamma * (1.0 - f64(b.terminated)) * next_q


@pytest.fixture(scope="module")
def batch():
    b = Transitions.random(jax.random.PRNGKey(1), B, OBS, ACT)
    return b.replace(terminated=jnp.zeros(B, jnp.float32).at[TERM_ROW].set(1.0))


# ---------------------------------------------------------------------------------------------
# (a) ACA
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aca_setup():
    learner = make_learner("aca", OBS, ACT, {"hidden_dims": HID, "beta": BETA})
    params = random_params(learner.init_params, 17)
    params["log_temp"] = jnp.float32(np.log(0.6))
    params["k"] = jnp.float32(0.7)
    return learner.config, params


def np_alignment(p, obs, u):
    """C = k (softplus(log pi_0(a|s) - c_beta(s)) + c_beta(s)), c_beta the smaller log pi_0 at mu_0 +- beta sigma_0."""
    mu0, ls0 = np_gaussian(p["actor0"], obs)
    c = np.minimum(np_tanh_gaussian_logp(mu0 - BETA * np.exp(ls0), mu0, ls0),
                   np_tanh_gaussian_logp(mu0 + BETA * np.exp(ls0), mu0, ls0))
    return p["k"] * (np_softplus(np_tanh_gaussian_logp(u, mu0, ls0) - c) + c)


def np_aca_critic_loss(p, b, z, cfg):
    """``z``: the standard-normal draw of a' ~ pi(s')."""
    mu, ls = np_gaussian(p["actor"], b.next_obs)
    u = mu + np.exp(ls) * z
    next_q = np_q(p["target_critic"], b.next_obs, np.tanh(u)).min(0) + np_alignment(p, f64(b.next_obs), u)
    y = np_td_target(b, cfg, p["log_temp"], u, mu, ls, next_q)
    eps = cfg.action_clip_eps
    u_data = np.arctanh(np.clip(f64(b.action), -1 + eps, 1 - eps))
    q = np_q(p["critic"], b.obs, b.action) + np_alignment(p, f64(b.obs), u_data)[None]
    return ((q - y[None]) ** 2).mean(1).sum()


def np_aca_actor_loss(p, b, z):
    """``z``: the standard-normal draw of a~ ~ pi(s)."""
    mu, ls = np_gaussian(p["actor"], b.obs)
    u = mu + np.exp(ls) * z
    q = np_q(p["critic"], b.obs, np.tanh(u)).min(0) + np_alignment(p, f64(b.obs), u)
    return (np.exp(p["log_temp"]) * np_tanh_gaussian_logp(u, mu, ls) - q).mean()


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_aca_critic_loss(aca_setup, batch, backup_entropy):
    """sum_i mean (R_i(s, a) + C(a) - y)^2 with y = r + gamma (1 - d) [min_j Rbar_j(s', a') + C(a')
    (- T log pi(a'|s'))], a' ~ pi(s'); and its gradient w.r.t. R (group ``critic``)."""
    cfg, params = aca_setup
    cfg = cfg.copy_and_resolve_references()
    cfg.backup_entropy = backup_entropy
    key = jax.random.PRNGKey(3)
    z, p64 = std_normal(key, (B, ACT)), tree64(params)
    loss, grad = run_jit(jax.value_and_grad(lambda p: aca.critic_loss(p, batch, key, cfg)[0]), params)
    assert_close(loss, np_aca_critic_loss(p64, batch, z, cfg))
    fd = fd_grad(lambda c: np_aca_critic_loss({**p64, "critic": c}, batch, z, cfg), p64["critic"])
    assert_grad_close(grad["critic"], fd)


def test_aca_actor_loss(aca_setup, batch):
    """mean [T log pi(a~|s) - min_i R_i(s, a~) - C(a~)], a~ ~ pi(s); its gradient w.r.t. the actor
    (through R, C and log pi)."""
    cfg, params = aca_setup
    key = jax.random.PRNGKey(4)
    z, p64 = std_normal(key, (B, ACT)), tree64(params)
    loss, grad = run_jit(jax.value_and_grad(lambda p: aca.actor_loss(p, batch, key, cfg)[0]), params)
    assert_close(loss, np_aca_actor_loss(p64, batch, z))
    assert_grad_close(grad["actor"], fd_grad(lambda a: np_aca_actor_loss({**p64, "actor": a}, batch, z), p64["actor"]))


# ---------------------------------------------------------------------------------------------
# (b) SMAC
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smac_setup():
    learner = make_learner("smac", OBS, ACT, {"hidden_dims": HID, "sm_batch_size": SM_BATCH, "score_w": 0.8,
                                              "score_config": SCORE_CONFIG})
    score = random_params(lambda k: sm.init_score_model(k, OBS, ACT, learner.config.score_config).params, 12)
    learner.set_score_params(score)
    params = random_params(learner.init_params, 8)
    params.update(score=score, log_temp=jnp.float32(np.log(0.37)))
    return learner.config, params


def np_score(p, obs, a, w, sc):
    """-eps(a, k=1, s, w) / sigma_1, sigma_1^2 = 1 - exp(-beta_min / T - (beta_max - beta_min) / (2 T^2))."""
    alpha_1 = np.exp(-sc.beta_min / sc.T - (sc.beta_max - sc.beta_min) / (2.0 * sc.T**2))
    n = a.shape[0]
    return -np_eps_network(p, a, obs, np.full(n, w), np.full(n, 1.0 / sc.T)) / np.sqrt(1.0 - alpha_1)


def smac_draws(key, cfg):
    """The critic loss's draws: key -> (k_td, k_sm); k_td: a' ~ pi(s') for the TD target; k_sm ->
    (k_pi, k_u, k_m): per L_SM state a policy draw, a uniform action, and whether the policy's is used."""
    k_td, k_sm = jax.random.split(key)
    k_pi, k_u, k_m = jax.random.split(k_sm, 3)
    return {"td": std_normal(k_td, (B, ACT)), "pi": std_normal(k_pi, (SM_BATCH, ACT)),
            "uniform": f64(jax.random.uniform(k_u, (SM_BATCH, ACT), minval=-1.0, maxval=1.0)),
            "use_pi": np.asarray(jax.random.bernoulli(k_m, cfg.policy_prob, (SM_BATCH, 1)))}


def np_smac_critic_loss(p, b, draws, cfg):
    """L_AC + kappa L_SM from the draws of :func:`smac_draws`."""
    # SAC's TD loss
    mu, ls = np_gaussian(p["actor"], b.next_obs)
    u = mu + np.exp(ls) * draws["td"]
    y = np_td_target(b, cfg, p["log_temp"], u, mu, ls, np_q(p["target_critic"], b.next_obs, np.tanh(u)).min(0))
    td = ((np_q(p["critic"], b.obs, b.action) - y[None]) ** 2).mean(1).sum()
    # L_SM on the first sm_batch_size states, a ~ B(A): policy with probability policy_prob, else uniform
    obs = f64(b.obs)[:SM_BATCH]
    mu, ls = np_gaussian(p["actor"], obs)
    a = np.where(draws["use_pi"], np.tanh(mu + np.exp(ls) * draws["pi"]), draws["uniform"])
    s = np_score(p["score"], obs, a, cfg.score_w, cfg.score_config)
    g = np_q_action_grad(p["critic"], obs, a)  # (E, n, A)
    if cfg.sm_target == "alpha_score":
        matched = np_softplus(np_mlp(p["alpha"]["params"], obs)[:, 0])[None, :, None] * s[None]
    else:  # "direction" (any sm_shrink: it scales a part of the gradient, not the value)
        matched = np.linalg.norm(g, axis=-1, keepdims=True) * (s / np.linalg.norm(s, axis=-1, keepdims=True))[None]
    return td + cfg.kappa * ((g - matched) ** 2).sum(-1).sum(0).mean()


# kappa puts the two terms on a like scale (here L_AC ~1.2, alpha_score's L_SM ~18, direction's ~0.05)
@pytest.mark.parametrize("sm_target, kappa", [("alpha_score", 0.1), ("direction", 20.0)])
def test_smac_critic_loss(smac_setup, batch, sm_target, kappa):
    """L_AC + kappa L_SM (key split into the TD and the matching draws), L_SM on the first
    sm_batch_size states with a NumPy score; with the paper's alpha_score form (no stop-gradient)
    also the gradient w.r.t. the critic, which reaches L_SM through grad_a Q."""
    cfg, params = smac_setup
    cfg = cfg.copy_and_resolve_references()
    cfg.sm_target, cfg.kappa = sm_target, kappa
    key = jax.random.PRNGKey(5)
    draws, p64 = smac_draws(key, cfg), tree64(params)
    assert 0 < draws["use_pi"].sum() < SM_BATCH  # both kinds of L_SM actions
    loss_fn = lambda p: smac.critic_loss(p, batch, key, cfg)[0]  # noqa: E731
    if sm_target != "alpha_score":
        assert_close(run_jit(loss_fn, params), np_smac_critic_loss(p64, batch, draws, cfg))
    else:
        loss, grad = run_jit(jax.value_and_grad(loss_fn), params)
        assert_close(loss, np_smac_critic_loss(p64, batch, draws, cfg))
        fd = fd_grad(lambda c: np_smac_critic_loss({**p64, "critic": c}, batch, draws, cfg), p64["critic"])
        assert_grad_close(grad["critic"], fd)


# ---------------------------------------------------------------------------------------------
# (c) the score model
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def score_setup():
    cfg = sm.default_score_config()
    cfg.update(hidden_dim=8, n_blocks=2, time_dim=4, time_mlp_dim=8, dropout=0.0, T=5, beta_min=0.2, beta_max=8.0)
    params = random_params(lambda k: sm.init_score_model(k, OBS, ACT, cfg).params, 5)
    keys = jax.random.split(jax.random.PRNGKey(6), 3)
    obs = jax.random.normal(keys[0], (B, OBS))
    act = jax.random.uniform(keys[1], (B, ACT), minval=-1.0, maxval=1.0)
    w = jax.random.uniform(keys[2], (B,))
    return cfg, params, obs, act, w


def test_eps_network_forward(score_setup):
    """eps_apply(a_k, k, s, w) = the NumPy EpsNetwork at t = k / T, one step k per row."""
    cfg, params, obs, act, w = score_setup
    k = jnp.array([1, 2, 3, 4, 5])
    a_k = 1.5 * act
    ref = np_eps_network(tree64(params), a_k, obs, w, f64(k) / cfg.T)
    assert_close(run_jit(lambda p: sm.eps_apply(p, a_k, obs, w, k, cfg), params), ref)


def test_ddpm_loss(score_setup):
    """mean_b ||eps - eps(sqrt(abar_k) a + sqrt(1 - abar_k) eps, k, s, w)||^2, k ~ U{1..T} and eps
    from the key, abar_k = prod_{j<=k} exp(-beta_min / T - (beta_max - beta_min) (2j - 1) / (2 T^2))."""
    cfg, params, obs, act, w = score_setup
    key = jax.random.PRNGKey(9)
    k_key, eps_key, _ = jax.random.split(key, 3)
    k = np.asarray(jax.random.randint(k_key, (B,), 1, cfg.T + 1))
    assert len(set(k.tolist())) > 1
    eps = f64(jax.random.normal(eps_key, (B, ACT)))
    j = np.arange(1, cfg.T + 1)
    abar = np.cumprod(np.exp(-cfg.beta_min / cfg.T - (cfg.beta_max - cfg.beta_min) * (2 * j - 1) / (2 * cfg.T**2)))
    ab = abar[k - 1][:, None]
    a_k = np.sqrt(ab) * f64(act) + np.sqrt(1.0 - ab) * eps
    ref = np.mean(np.sum((eps - np_eps_network(tree64(params), a_k, obs, w, k / cfg.T)) ** 2, -1))
    assert_close(run_jit(lambda p: sm.ddpm_loss(p, obs, act, w, key, cfg), params), ref)


# ---------------------------------------------------------------------------------------------
# (d) SAMG
# ---------------------------------------------------------------------------------------------
def np_encode(p, obs, act, cfg):
    """The C-VAE encoder: (z_m, z_v), z_v the log-std clipped to [log_std_min, log_std_max]."""
    e = p["params"]["encoder"]
    h = np_mlp(e["trunk"], np.concatenate([f64(obs), f64(act)], -1))
    z_m = h @ f64(e["mean"]["kernel"]) + f64(e["mean"]["bias"])
    z_v = np.clip(h @ f64(e["log_std"]["kernel"]) + f64(e["log_std"]["bias"]), cfg.log_std_min, cfg.log_std_max)
    return z_m, z_v


@pytest.mark.parametrize("decoder_action", [False, True])
def test_cvae_elbo_loss(batch, decoder_action):
    """mean (Dec(z, s[, a]) - s')^2 + w mean KL(N(z_m, e^{2 z_v}) || N(0, 1)), z = z_m + e^{z_v} eps."""
    cfg = cvae.default_cvae_config()
    cfg.hidden_dims, cfg.decoder_action = HID, decoder_action
    params = random_params(lambda k: cvae.init_cvae(k, OBS, ACT, cfg), 1)
    eps = jax.random.normal(jax.random.PRNGKey(4), (B, 2 * ACT))
    z_m, z_v = np_encode(params, batch.obs, batch.action, cfg)
    z = z_m + np.exp(z_v) * f64(eps)
    dec_in = [z, f64(batch.obs)] + ([f64(batch.action)] if decoder_action else [])
    recon = np_mlp(params["params"]["decoder"], np.concatenate(dec_in, -1))
    kl = 0.5 * (np.exp(2 * z_v) + z_m**2 - 1.0) - z_v
    ref = np.mean((recon - f64(batch.next_obs)) ** 2) + 0.3 * kl.mean()
    lib = run_jit(lambda p: cvae.elbo_loss(p, batch.obs, batch.action, batch.next_obs, eps, 0.3, cfg)[0], params)
    assert_close(lib, ref)


def test_gaussian_kl_numerical_integral():
    """KL(N(m, e^{2 v}) || N(0, 1)) per dimension = the integral of q log(q / p) on a fine grid."""
    z_m = np.array([-1.5, 0.0, 0.3, 2.0, 0.7])
    z_v = np.array([-1.0, 0.5, 0.0, -0.2, 0.9])
    x, dx = np.linspace(-40.0, 40.0, 400_001, retstep=True)
    ref = []
    for m, v in zip(z_m, z_v):
        log_q = -0.5 * ((x - m) / np.exp(v)) ** 2 - v - 0.5 * np.log(2 * np.pi)
        log_p = -0.5 * x**2 - 0.5 * np.log(2 * np.pi)
        ref.append(np.sum(np.exp(log_q) * (log_q - log_p)) * dx)
    assert_close(cvae.gaussian_kl(jnp.asarray(z_m, jnp.float32), jnp.asarray(z_v, jnp.float32)), np.array(ref))


def test_fit_normals_weighted():
    """Weighted per-dimension mean and std of z_m and z_v = the plain ones of the rows repeated
    by their (integer) weights; a constant dimension's std is floored at 1e-6."""
    rng = np.random.default_rng(0)
    z_m, z_v = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) - 1.0
    z_m[:, 2] = 0.7
    weights = np.array([2, 0, 1, 3, 1, 1])
    lib = confidence.fit_normals(*(jnp.asarray(x, jnp.float32) for x in (z_m, z_v, weights)))
    rep_m, rep_v = np.repeat(z_m, weights, 0), np.repeat(z_v, weights, 0)
    ref = {"mu_m": rep_m.mean(0), "sigma_m": np.maximum(rep_m.std(0), 1e-6),
           "mu_v": rep_v.mean(0), "sigma_v": np.maximum(rep_v.std(0), 1e-6)}
    for name in ref:
        np.testing.assert_allclose(f64(lib[name]), ref[name], rtol=RTOL, atol=1e-7, err_msg=name)


@pytest.fixture(scope="module")
def samg_cql_setup(batch):
    learner = make_learner("samg_cql", OBS, ACT, {
        "hidden_dims": HID, "cvae": {"hidden_dims": HID}, "p_threshold": P_THRESHOLD, "cql_max_target_backup": True,
        "cql_n_actions": 3, "backup_entropy": True, "cql_alpha": 0.0})
    cfg = learner.config
    cvae_params = random_params(lambda k: cvae.init_cvae(k, OBS, ACT, cfg.cvae), 1)
    # latent normals around the batch's own encodings, widened and shifted so that p(s, a) is
    # above the threshold for some rows and cut to 0 for others
    z_m, z_v = np_encode(cvae_params, batch.obs, batch.action, cfg.cvae)
    stats = {"mu_m": z_m.mean(0) + 0.1, "sigma_m": 2 * z_m.std(0), "mu_v": z_v.mean(0), "sigma_v": 2 * z_v.std(0)}
    stats = {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}
    learner.set_cvae(cvae_params, stats)
    params = random_params(lambda k: learner.init(k).params, 9)
    params.update(cvae=cvae_params, cvae_stats=stats, guidance=jnp.float32(1.0), log_temp=jnp.float32(np.log(0.37)))
    return learner, cfg, params


def np_samg_p(params, obs, act, cfg):
    """p = p_int if p_int >= p_m else 0, p_int = mean over z_m's and z_v's dimensions of the
    two-sided tail probabilities erfc(|z - mu| / (sigma sqrt 2)), averaged 50/50."""
    z_m, z_v = np_encode(params["cvae"], obs, act, cfg.cvae)
    st = tree64(params["cvae_stats"])
    erfc = np.vectorize(math.erfc)
    t_m = erfc(np.abs(z_m - st["mu_m"]) / (st["sigma_m"] * np.sqrt(2))).mean(-1)
    t_v = erfc(np.abs(z_v - st["mu_v"]) / (st["sigma_v"] * np.sqrt(2))).mean(-1)
    p_int = 0.5 * t_m + 0.5 * t_v
    return np.where(p_int >= cfg.p_threshold, p_int, 0.0)


def test_samg_cql_guided_max_backup_target(samg_cql_setup, batch):
    """y = r + gamma (1 - d) [max_j ((1 - p) min_i Qbar_i(s', a'_j) + p min_i Q_off,i(s', a'_j))
    - T log pi(a'_j*|s')], the mix formed per sample before the max, p the thresholded C-VAE
    coefficient; with cql_alpha = 0 the learner's critic loss is the TD loss on that target."""
    learner, cfg, params = samg_cql_setup
    p64 = tree64({k: v for k, v in params.items() if k not in ("cvae", "cvae_stats")})
    coef = np_samg_p(params, batch.obs, batch.action, cfg)
    assert np.any(coef == 0.0) and np.any((coef > 0.0) & (coef < 1.0)), coef
    key = jax.random.PRNGKey(3)
    k_td = jax.random.split(key, 4)[0]  # the CQL critic loss's key use
    mu, ls = np_gaussian(p64["actor"], batch.next_obs)
    u = mu + np.exp(ls) * std_normal(k_td, (B, ACT), cfg.cql_n_actions)  # (n, B, A)
    mix = np.stack([(1 - coef) * np_q(p64["target_critic"], batch.next_obs, np.tanh(u_j)).min(0)
                    + coef * np_q(p64["offline_critic"], batch.next_obs, np.tanh(u_j)).min(0) for u_j in u], 1)
    best = mix.argmax(1)
    rows = np.arange(B)
    y = np_td_target(batch, cfg, p64["log_temp"], u[best, rows], mu, ls, mix[rows, best])
    lib_y, lib_loss = run_jit(lambda p: (cql.td_target(p, batch, k_td, cfg, samg.guided_next_q),
                                         learner.critic_loss_fn(p, batch, key, cfg)[0]), params)
    assert_close(lib_y, y)
    assert_close(lib_loss, ((np_q(p64["critic"], batch.obs, batch.action) - y[None]) ** 2).mean(1).sum())
