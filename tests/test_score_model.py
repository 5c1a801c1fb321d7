"""Tests of SMAC's dataset score model (smac_jax.score.model, smac_jax.networks.diffusion).

The main check trains a small model on a synthetic conditional Gaussian with an analytic score:

    s ~ U[-1, 1]^2,  w ~ U[0, 1],  a | s, w ~ N(mu(s, w), S)   (2-D actions, stds 0.15 / 0.10,
                                                                correlation 0.5)

What the model estimates. The DDPM's eps-network at step k minimises E||eps - eps_omega(a_k)||^2,
whose minimiser is E[eps | a_k] = -sigma_k grad log p_k(a_k), where p_k is the law of
a_k = sqrt(abar_k) a + sigma_k eps. For a Gaussian N(mu, S) that law is
N(sqrt(abar_k) mu, abar_k S + sigma_k^2 I). ``score(s, a) = -eps_omega(a, k=1, s, w) / sigma_1``
therefore estimates grad log p_1 evaluated *at the clean action a itself* (the network is simply
queried with a in place of a_1), i.e.

    -(abar_1 S + sigma_1^2 I)^{-1} (a - sqrt(abar_1) mu(s, w)),

and that is what it is compared with, at (s, w, a) drawn from the data. (The score of the clean
distribution, -S^{-1}(a - mu), is ~15x larger with sigma_1 = 0.44 and would fail the magnitude
check; ``test_score_matches_noised_marginal`` asserts that too, so the check can tell them apart.)

Sizes are small (hidden 64, 3 blocks, 4000 steps at lr 1e-3) so the file runs in well under 90 s
on 2 CPU cores; ``experiments/score_model_synthetic.py`` runs the same check at the full size.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smac_jax.networks.diffusion import EpsNetwork
from smac_jax.score import model as sm

OBS_DIM, ACT_DIM = 2, 2
STD = np.array([0.15, 0.10])
RHO = 0.5
COV = np.array(
    [[STD[0] ** 2, RHO * STD[0] * STD[1]], [RHO * STD[0] * STD[1], STD[1] ** 2]]
)
N_DATA = 50_000
N_STEPS = 4000


def synthetic_mean(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """mu(s, w): (n, 2) -> (n, 2); depends nonlinearly on s and linearly on w."""
    return np.stack(
        [0.45 * s[:, 0] + 0.4 * (w - 0.5), 0.4 * np.sin(1.5 * s[:, 1]) - 0.3 * (w - 0.5)], axis=-1
    )


def synthetic_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = rng.uniform(-1.0, 1.0, (n, OBS_DIM))
    w = rng.uniform(0.0, 1.0, n)
    a = synthetic_mean(s, w) + rng.standard_normal((n, ACT_DIM)) @ np.linalg.cholesky(COV).T
    return s.astype(np.float32), w.astype(np.float32), a.astype(np.float32)


def noised_marginal_score(a: np.ndarray, mean: np.ndarray, abar: float) -> np.ndarray:
    """grad_x log N(x; sqrt(abar) mean, abar COV + (1 - abar) I) at x = a (float64)."""
    cov = abar * COV + (1.0 - abar) * np.eye(ACT_DIM)
    return -(a - np.sqrt(abar) * mean) @ np.linalg.inv(cov)  # cov is symmetric


def schedule_f64(T: int = 5, beta_min: float = 0.1, beta_max: float = 10.0):
    """Reference schedule from the continuous VP SDE: abar(k) = exp(-int_0^{k/T} beta(u) du)
    with beta(u) = beta_min + u (beta_max - beta_min); alpha_k = abar_k / abar_{k-1}."""
    k = np.arange(0, T + 1, dtype=np.float64)
    abar = np.exp(-(beta_min * k / T + 0.5 * (beta_max - beta_min) * (k / T) ** 2))
    alphas = abar[1:] / abar[:-1]
    return 1.0 - alphas, alphas, abar[1:]


def small_config(**overrides):
    c = sm.default_score_config()
    c.hidden_dim = 64
    c.time_dim = 16
    c.time_mlp_dim = 32
    c.lr = 1e-3
    for name, value in overrides.items():
        c[name] = value
    return c


@pytest.fixture(scope="module")
def trained():
    """One small model trained on the synthetic data, shared by the tests below."""
    config = small_config()
    s, w, a = synthetic_data(np.random.default_rng(0), N_DATA)
    init_state = sm.init_score_model(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
    args = (init_state, jnp.asarray(s), jnp.asarray(a), jnp.asarray(w), jax.random.PRNGKey(1))
    # The suite compiles at a low XLA optimisation level (conftest.py); this one long training loop
    # runs several times faster at XLA's usual level, so it is compiled at that level.
    train = jax.jit(lambda *xs: sm.train_steps(*xs, N_STEPS, config))
    state, metrics = train.lower(*args).compile(compiler_options={"xla_backend_optimization_level": 2})(*args)
    return dict(config=config, init_state=init_state, state=state, losses=np.asarray(metrics["loss"]))


# ------------------------------------------------------------------------------------------
# Pure-math checks (no training)
# ------------------------------------------------------------------------------------------


def test_vp_schedule_matches_float64_reference():
    for T, bmin, bmax in [(5, 0.1, 10.0), (20, 0.1, 20.0)]:
        betas, alphas, abars = (np.asarray(x) for x in sm.vp_schedule(T, bmin, bmax))
        ref_betas, ref_alphas, ref_abars = schedule_f64(T, bmin, bmax)
        assert betas.shape == alphas.shape == abars.shape == (T,)
        np.testing.assert_allclose(alphas, ref_alphas, rtol=1e-6)
        np.testing.assert_allclose(betas, ref_betas, rtol=1e-5)
        np.testing.assert_allclose(abars, ref_abars, rtol=1e-5)
    # The default k=1 noise level quoted in the docs: sigma_1 = sqrt(1 - exp(-0.218)) = 0.4426.
    abar_1 = float(sm.vp_schedule()[2][0])
    assert abs(np.sqrt(1.0 - abar_1) - np.sqrt(1.0 - np.exp(-0.218))) < 1e-6


def test_default_config_matches_spec():
    c = sm.default_score_config()
    assert (c.T, c.beta_min, c.beta_max) == (5, 0.1, 10.0)
    assert (c.hidden_dim, c.n_blocks, c.dropout, c.time_dim, c.time_mlp_dim) == (256, 3, 0.1, 128, 256)
    assert (c.lr, c.ema, c.batch_size, c.score_w, c.score_sign) == (3e-4, 0.001, 256, 1.0, "neg_eps_over_sigma")


def test_full_size_architecture_shapes():
    obs_dim, act_dim = 17, 6
    c = sm.default_score_config()
    state = jax.eval_shape(lambda: sm.init_score_model(jax.random.PRNGKey(0), obs_dim, act_dim, c))
    p = jax.tree.map(lambda x: x.shape, state.params)
    assert p["fourier"]["freqs"] == (1, 64)  # 128 features = cos and sin of 64 frequencies
    assert p["time_dense_0"]["kernel"] == (128, 256) and p["time_dense_1"]["kernel"] == (256, 256)
    assert p["in"]["kernel"] == (act_dim + obs_dim + 1 + 256, 256)
    assert sorted(k for k in p if k.startswith("block_")) == ["block_0", "block_1", "block_2"]
    for i in range(3):
        assert p[f"block_{i}"]["Dense_0"]["kernel"] == (256, 1024)
        assert p[f"block_{i}"]["Dense_1"]["kernel"] == (1024, 256)
        assert p[f"block_{i}"]["LayerNorm_0"]["scale"] == (256,)
    assert p["out"]["kernel"] == (256, act_dim)


def test_network_dropout_only_in_training():
    net = EpsNetwork(act_dim=3, hidden_dim=16, n_blocks=2, dropout_rate=0.5, time_dim=8, time_mlp_dim=8)
    x, s = jnp.ones((4, 3)), jnp.ones((4, 5))
    params = net.init(jax.random.PRNGKey(0), x, s, 0.5, jnp.full((4,), 0.2))["params"]
    apply = functools.partial(net.apply, {"params": params}, x, s, 0.5, 0.2)
    np.testing.assert_array_equal(apply(train=False), apply(train=False))
    a = apply(train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    b = apply(train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert a.shape == (4, 3) and not np.allclose(a, b)


def test_update_adam_and_ema_match_hand_computation():
    # A large learning rate and EMA rate make every term of the formulas visible in float32.
    config = small_config(hidden_dim=16, lr=0.1, ema=0.25)
    state = sm.init_score_model(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
    # An EMA that differs from the parameters, so that the two are not interchangeable.
    state = state.replace(ema_params=jax.tree.map(lambda p: 0.5 * p + 0.1, state.params))
    s, w, a = synthetic_data(np.random.default_rng(3), 64)
    key = jax.random.PRNGKey(7)

    new_state, metrics = jax.jit(functools.partial(sm.update, config=config))(state, s, a, w, key)

    grads = jax.jit(jax.grad(functools.partial(sm.ddpm_loss, config=config)))(state.params, s, a, w, key)
    # First Adam step (bias-corrected moments are g and g^2): p - lr * g / (|g| + 1e-8).
    hand_params = jax.tree.map(
        lambda p, g: np.asarray(p, np.float64) - 0.1 * np.asarray(g, np.float64) / (np.abs(np.asarray(g, np.float64)) + 1e-8),
        state.params, grads,
    )
    hand_ema = jax.tree.map(
        lambda e, p: 0.75 * np.asarray(e, np.float64) + 0.25 * p, state.ema_params, hand_params
    )
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), new_state.params, hand_params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), new_state.ema_params, hand_ema)
    assert int(new_state.step) == 1
    np.testing.assert_allclose(
        metrics["loss"], sm.ddpm_loss(state.params, s, a, w, key, config), rtol=1e-6
    )


def test_ddpm_loss_uses_all_noise_levels():
    """With a zero network (eps_hat = 0) the loss is E||eps||^2 = act_dim, for any data."""
    config = small_config(hidden_dim=16)
    state = sm.init_score_model(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
    zero = jax.tree.map(jnp.zeros_like, state.params)
    s, w, a = synthetic_data(np.random.default_rng(4), 20_000)
    loss = float(sm.ddpm_loss(zero, s, a, w, jax.random.PRNGKey(0), config))
    assert abs(loss - ACT_DIM) < 0.06


def test_trajectory_weights():
    w = np.asarray(sm.trajectory_weights(jnp.array([3.0, 3.0, 1.0, 5.0, 5.0, 2.0])))
    np.testing.assert_allclose(w, [0.5, 0.5, 0.0, 1.0, 1.0, 0.25], atol=1e-7)
    np.testing.assert_array_equal(np.asarray(sm.trajectory_weights(jnp.full((4,), -7.0))), np.ones(4))


def test_reverse_chain_matches_closed_form_with_perfect_eps():
    """With the analytic eps of a Gaussian and no clipping, each reverse step is affine, so the
    output law is Gaussian with a mean / covariance that can be propagated in closed form."""
    config = sm.default_score_config()
    config.sample_clip = 1e6
    betas, alphas, abars = schedule_f64()
    mean = np.array([0.3, -0.2])
    samples = np.asarray(
        sm.ddpm_reverse_chain(
            oracle_eps(mean), jax.random.normal(jax.random.PRNGKey(0), (40_000, ACT_DIM)),
            jax.random.PRNGKey(1), config,
        )
    )
    m, v = np.zeros(ACT_DIM), np.eye(ACT_DIM)  # x_T ~ N(0, I)
    for k in range(5, 0, -1):
        i = k - 1
        gain = betas[i] * np.linalg.inv(abars[i] * COV + (1.0 - abars[i]) * np.eye(ACT_DIM))
        A = (np.eye(ACT_DIM) - gain) / np.sqrt(alphas[i])
        m = A @ m + gain @ (np.sqrt(abars[i]) * mean) / np.sqrt(alphas[i])
        v = A @ v @ A.T + (betas[i] * np.eye(ACT_DIM) if k > 1 else 0.0)
    np.testing.assert_allclose(samples.mean(0), m, atol=0.003)
    np.testing.assert_allclose(np.cov(samples.T), v, rtol=0.05, atol=5e-5)
    # The chain is unbiased in the mean but, with T = 5, contracts a narrow distribution.
    np.testing.assert_allclose(m, mean, atol=1e-3)
    assert np.all(np.diag(v) < 0.5 * np.diag(COV))


def oracle_eps(mean: np.ndarray):
    """The exact E[eps | x_k] for data N(mean, COV) (checked against the float64 marginal score below)."""
    return sm.gaussian_eps(mean, COV)


def test_gaussian_eps_is_the_scaled_noised_marginal_score():
    """sm.gaussian_eps = -sqrt(1 - abar_k) grad_x log p_k(x), p_k the noised Gaussian marginal (float64)."""
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(7, ACT_DIM)), rng.normal(size=(7, ACT_DIM))
    abars = schedule_f64()[2]
    for k in (1, 3, 5):
        ref = -np.sqrt(1.0 - abars[k - 1]) * noised_marginal_score(x, mean, abars[k - 1])
        np.testing.assert_allclose(np.asarray(oracle_eps(mean)(jnp.asarray(x, jnp.float32), k)), ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Checks of the trained model
# ------------------------------------------------------------------------------------------


def test_ddpm_loss_finite_and_decreases(trained):
    losses = trained["losses"]
    assert losses.shape == (N_STEPS,) and np.all(np.isfinite(losses))
    assert losses[-500:].mean() < 0.5 * losses[:100].mean()
    s, w, a = synthetic_data(np.random.default_rng(5), 2048)
    key, config = jax.random.PRNGKey(11), trained["config"]
    before = float(sm.ddpm_loss(trained["init_state"].params, s, a, w, key, config))
    after = float(sm.ddpm_loss(trained["state"].ema_params, s, a, w, key, config))
    assert np.isfinite(before) and np.isfinite(after)
    assert after < 0.1 * before, (before, after)


def test_score_matches_noised_marginal(trained):
    config, params = trained["config"], trained["state"].ema_params
    s, w, a = synthetic_data(np.random.default_rng(6), 4000)
    abar_1 = float(sm.vp_schedule()[2][0])
    analytic = noised_marginal_score(a.astype(np.float64), synthetic_mean(s, w), abar_1)
    model = np.asarray(jax.jit(functools.partial(sm.score, config=config))(params, s, a, w), np.float64)

    def agreement(x, y):
        cos = np.sum(x * y, -1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
        return cos.mean(), np.median(np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1))

    cos, ratio = agreement(model, analytic)
    assert cos >= 0.9, cos
    assert 0.5 <= ratio <= 2.0, ratio
    # The comparison discriminates: the clean distribution's score has the wrong size.
    clean = -(a - synthetic_mean(s, w)) @ np.linalg.inv(COV)
    assert not 0.5 <= agreement(model, clean)[1] <= 2.0


def test_score_sign_conventions(trained):
    config, params = trained["config"], trained["state"].ema_params
    s, w, a = synthetic_data(np.random.default_rng(8), 16)
    eps_1 = np.asarray(sm.eps_apply(params, a, s, w, jnp.ones(16, jnp.int32), config))
    sigma_1 = np.sqrt(1.0 - schedule_f64()[2][0])
    np.testing.assert_allclose(sm.score(params, s, a, w, config), -eps_1 / sigma_1, rtol=1e-5, atol=1e-6)
    raw = config.copy_and_resolve_references()
    raw.score_sign = "raw_eps"
    np.testing.assert_allclose(sm.score(params, s, a, w, raw), eps_1, rtol=1e-6, atol=1e-7)
    # w = None means config.score_w.
    np.testing.assert_array_equal(
        sm.score(params, s, a, None, config), sm.score(params, s, a, jnp.ones(16), config)
    )
    raw.score_sign = "bogus"
    with pytest.raises(ValueError, match="score_sign"):
        sm.score(params, s, a, w, raw)


@pytest.mark.parametrize("obs, w", [((0.5, -0.5), 0.2), ((-0.7, 0.8), 0.9)])
def test_sampler_reproduces_distribution(trained, obs, w):
    """Means match the data; covariances match the perfect-network T=5 chain (see
    ``test_reverse_chain_matches_closed_form_with_perfect_eps``: the chain itself shrinks the
    spread, e.g. std 0.15 -> ~0.06 here, so the data covariance is not the right target).
    Tolerance on the covariance: each marginal std within 35% of the perfect chain's, correlation
    within 0.35. The spread is ill-conditioned with T = 5: the last step returns
    (a_1 + sigma_1^2 score(a_1)) / sqrt(abar_1), a small difference of large terms, so a few percent
    of error in the score's magnitude moves the output std by tens of percent (the full-size model
    of experiments/score_model_synthetic.py, ratio 1.04, gives ~0.63x the perfect chain's std)."""
    config, params = trained["config"], trained["state"].ema_params
    n = 4000
    obs = np.tile(np.asarray(obs, np.float32), (n, 1))
    ws = np.full((n,), w, np.float32)
    mean = synthetic_mean(obs[:1], ws[:1])[0]
    model = np.asarray(jax.jit(functools.partial(sm.sample, config=config))(params, obs, ws, jax.random.PRNGKey(3)))
    perfect = np.asarray(
        sm.ddpm_reverse_chain(
            oracle_eps(mean), jax.random.normal(jax.random.PRNGKey(4), (n, ACT_DIM)),
            jax.random.PRNGKey(5), config,
        )
    )
    assert model.shape == (n, ACT_DIM) and np.all(np.abs(model) <= 1.0)
    np.testing.assert_allclose(model.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(perfect.mean(0), mean, atol=0.01)
    std_model, std_perfect = model.std(0), perfect.std(0)
    assert np.all(np.abs(std_model / std_perfect - 1.0) < 0.35), (std_model, std_perfect)
    corr = lambda x: np.corrcoef(x.T)[0, 1]
    assert abs(corr(model) - corr(perfect)) < 0.35, (corr(model), corr(perfect))


def test_save_load_roundtrip(trained, tmp_path):
    config, state = trained["config"], trained["state"]
    meta = {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "dataset_id": "synthetic/gaussian-v0"}
    path = tmp_path / "score_model"
    sm.save_score_model(path, state, config, meta)
    loaded, loaded_config, loaded_meta = sm.load_score_model(path)
    assert loaded_meta == meta
    assert loaded_config.to_dict() == config.to_dict()
    jax.tree.map(np.testing.assert_array_equal, loaded, state)
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    s, w, a = synthetic_data(np.random.default_rng(9), 64)
    np.testing.assert_array_equal(
        sm.score(loaded.ema_params, s, a, w, loaded_config), sm.score(state.ema_params, s, a, w, config)
    )
    with pytest.raises(FileExistsError):
        sm.save_score_model(path, state, config, meta)
    sm.save_score_model(path, state, config, meta, overwrite=True)
    with pytest.raises(ValueError, match="obs_dim"):
        sm.save_score_model(tmp_path / "other", state, config, {"act_dim": ACT_DIM})
