"""SMAC: the per-sample action gradient, the score-matching loss on constructed cases, the
optimiser routing, hand-over, and a short end-to-end update."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smac_jax import networks
from smac_jax.learners import make_learner
from smac_jax.learners.base import ConfigError
from smac_jax.learners.smac import action_gradients, alpha_value, score_matching_loss
from smac_jax.optim import muon_partition
from smac_jax.score import model as sm
from smac_jax.types import Transitions

OBS, ACT = 3, 2
SMALL = {"hidden_dims": (8, 8), "sm_batch_size": 0}


def small_score_config():
    c = sm.default_score_config()
    c.hidden_dim, c.n_blocks, c.time_dim, c.time_mlp_dim = 16, 1, 8, 16
    return c


def smac(overrides=None):
    ov = {**SMALL, **(overrides or {})}
    learner = make_learner("smac", OBS, ACT, ov)
    cfg = small_score_config()
    learner.set_score_params(sm.init_score_model(jax.random.PRNGKey(7), OBS, ACT, cfg).ema_params, cfg)
    return learner


def batch(n=6, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    z = jnp.zeros(n)
    return Transitions(
        obs=jax.random.normal(k[0], (n, OBS)), action=jax.random.uniform(k[1], (n, ACT), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (n,)), next_obs=jax.random.normal(k[3], (n, OBS)), terminated=z,
        truncated=z, episode=jnp.zeros(n, jnp.int32), rtg=z, mc_return=z, traj_return=z,
    )


def test_action_gradients_match_finite_differences():
    learner = smac()
    p = learner.init(jax.random.PRNGKey(0)).params
    b = batch()
    g = np.asarray(action_gradients(p["critic"], b.obs, b.action, learner.config))  # (E, B, A)
    q = lambda a: np.asarray(networks.critic_net(learner.config).apply(p["critic"], b.obs, a), np.float64)
    eps = 1e-2
    fd = np.zeros_like(g)
    for j in range(ACT):
        e = jnp.zeros(ACT).at[j].set(eps)
        fd[:, :, j] = (q(b.action + e) - q(b.action - e)) / (2 * eps)
    assert g.shape == (2, 6, ACT)
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-4)
    # members differ (independent initialisation), so the ensemble axis is really per member
    assert not np.allclose(g[0], g[1])


def _linear_critic(config, direction):
    """Critic params whose every member is Q(s, a) = 3 + direction . a on [-1, 1]^|A| (ReLUs kept
    in their linear regime by large biases)."""
    h = config.hidden_dims[0]
    p = networks.critic_net(config).init(jax.random.PRNGKey(0), jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    q = jax.tree.map(np.array, p["params"]["q"]["mlp"])
    E = q["dense_0"]["kernel"].shape[0]
    k0 = np.zeros((E, OBS + ACT, h), np.float32)
    k0[:, OBS:, :ACT] = np.eye(ACT)  # hidden j < ACT carries a_j
    q["dense_0"] = {"kernel": k0, "bias": np.full((E, h), 5.0, np.float32)}
    q["dense_1"] = {"kernel": np.tile(np.eye(h, dtype=np.float32), (E, 1, 1)), "bias": np.zeros((E, h), np.float32)}
    ko = np.zeros((E, h, 1), np.float32)
    ko[:, :ACT, 0] = direction
    q["out"] = {"kernel": ko, "bias": np.full((E, 1), 3.0 - 5.0 * np.sum(direction), np.float32)}
    return {"params": {"q": {"mlp": jax.tree.map(jnp.asarray, q)}}}


def _constant_score_net(params, eps_value):
    out = dict(params["out"])
    out["kernel"] = jnp.zeros_like(out["kernel"])
    out["bias"] = jnp.asarray(eps_value, jnp.float32)
    return {**params, "out": out}


def _constant_alpha(params, value):
    p = jax.tree.map(jnp.zeros_like, params)
    raw = np.log(np.expm1(value))  # softplus^-1
    p["params"]["out"]["bias"] = jnp.full_like(p["params"]["out"]["bias"], raw)
    return p


@pytest.mark.parametrize("perturb", [0.0, 0.5])
def test_score_matching_loss_zero_exactly_when_gradient_matches(perturb):
    """The paper's form (sm_target="alpha_score"): zero exactly when grad_a Q = alpha_psi score."""
    learner = smac({"sm_target": "alpha_score"})
    cfg = learner.config
    params = dict(learner.init(jax.random.PRNGKey(0)).params)
    direction = np.array([0.7, -1.3], np.float32)
    params["critic"] = _linear_critic(cfg, direction)
    alpha0 = 2.0
    params["alpha"] = _constant_alpha(params["alpha"], alpha0)
    # score = -eps / sigma_1 must equal direction / alpha0 (+ perturbation)
    sigma1 = float(np.sqrt(1.0 - np.asarray(sm.vp_schedule()[2])[0]))
    target_score = direction / alpha0 + perturb
    params["score"] = _constant_score_net(params["score"], -target_score * sigma1)
    b = batch()
    np.testing.assert_allclose(np.asarray(alpha_value(params, b.obs, cfg)), alpha0, rtol=1e-5)
    g = np.asarray(action_gradients(params["critic"], b.obs, b.action, cfg))
    np.testing.assert_allclose(g, np.broadcast_to(direction, g.shape), rtol=1e-5)
    loss, info = score_matching_loss(params, b, jax.random.PRNGKey(1), cfg)
    # independent value: E members * |alpha0 * perturb|^2 summed over the action dims
    expected = 2 * ACT * (alpha0 * perturb) ** 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-6)
    # a match_fn of one's own replaces the matching term, in L_SM and in the critic loss, and gets
    # the critics' action gradients, the score and alpha_psi(s)
    seen = {}

    def match_fn(g_, score, alpha, config):
        seen.update(g=np.asarray(g_), score=np.asarray(score), alpha=np.asarray(alpha))
        return jnp.float32(7.0), jnp.zeros(g_.shape[:2])

    loss, info = score_matching_loss(params, b, jax.random.PRNGKey(1), cfg, match_fn)
    assert float(loss) == 7.0 and float(info["grad_q_score_cos"]) == 0.0
    np.testing.assert_allclose(seen["g"], np.broadcast_to(direction, seen["g"].shape), rtol=1e-5)
    np.testing.assert_allclose(seen["score"], np.broadcast_to(target_score, seen["score"].shape), rtol=1e-4)
    np.testing.assert_allclose(seen["alpha"], alpha0, rtol=1e-5)
    from smac_jax.learners.smac import critic_loss
    _, info = critic_loss(params, b, jax.random.PRNGKey(1), cfg, match_fn=match_fn)
    assert float(info["sm_loss"]) == 7.0


@pytest.mark.parametrize("sm_target", ["alpha_score", "direction", "rotation"])
def test_score_matching_loss_float64_reference(sm_target):
    """L_SM on a random tiny critic against NumPy with the same sampled actions and scores:
    matched to alpha_psi(s) score (the paper) or to the score's direction at |grad_a Q|."""
    learner = smac({"sm_target": sm_target})
    cfg = learner.config
    params = learner.init(jax.random.PRNGKey(3)).params
    b = batch(n=5, seed=4)
    key = jax.random.PRNGKey(5)
    from smac_jax.learners.smac import sample_bA

    a = sample_bA(params, b.obs, key, cfg)
    score = np.asarray(sm.score(params["score"], b.obs, a, cfg.score_w, cfg.score_config), np.float64)
    # grad_a Q by central differences in float64 on a NumPy forward pass of each member
    q = jax.tree.map(lambda x: np.asarray(x, np.float64), params["critic"]["params"]["q"]["mlp"])

    def q_np(i, s, act):
        x = np.concatenate([s, act], -1)
        x = np.maximum(x @ q["dense_0"]["kernel"][i] + q["dense_0"]["bias"][i], 0)
        x = np.maximum(x @ q["dense_1"]["kernel"][i] + q["dense_1"]["bias"][i], 0)
        return (x @ q["out"]["kernel"][i] + q["out"]["bias"][i])[..., 0]

    al = jax.tree.map(lambda x: np.asarray(x, np.float64), params["alpha"]["params"])
    x = np.asarray(b.obs, np.float64)
    x = np.maximum(x @ al["dense_0"]["kernel"] + al["dense_0"]["bias"], 0)
    x = np.maximum(x @ al["dense_1"]["kernel"] + al["dense_1"]["bias"], 0)
    alpha = np.log1p(np.exp((x @ al["out"]["kernel"] + al["out"]["bias"])[..., 0]))
    obs, act = np.asarray(b.obs, np.float64), np.asarray(a, np.float64)
    total = 0.0
    for i in range(2):
        g = np.zeros_like(act)
        for j in range(ACT):
            e = np.zeros(ACT)
            e[j] = 1e-6
            g[:, j] = (q_np(i, obs, act + e) - q_np(i, obs, act - e)) / 2e-6
        if sm_target == "alpha_score":
            matched = alpha[:, None] * score
        else:  # "direction" and "rotation" have the same value: 2 |g|^2 (1 - cos)
            matched = np.linalg.norm(g, axis=-1, keepdims=True) * score / np.linalg.norm(score, axis=-1, keepdims=True)
        total += np.sum((g - matched) ** 2, -1)
    loss, _ = score_matching_loss(params, b, key, cfg)
    np.testing.assert_allclose(float(loss), total.mean(), rtol=1e-3)


def test_sm_loss_trains_critic_and_alpha_double_backward():
    """The paper's form: L_SM's gradient reaches psi, and the critic's through grad_a Q (with the
    default "direction" target psi is unused and the magnitude is a constant of the gradient)."""
    learner = smac({"kappa": 1.0, "sm_target": "alpha_score"})
    params = learner.init(jax.random.PRNGKey(0)).params
    b = batch()
    grads = jax.grad(lambda t: score_matching_loss({**params, **t}, b, jax.random.PRNGKey(1), learner.config)[0])(
        {"critic": params["critic"], "alpha": params["alpha"]}
    )
    norms = {k: float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(v)))) for k, v in grads.items()}
    assert norms["critic"] > 0 and norms["alpha"] > 0
    # the critic gradient flows through grad_a Q (double backward): check it by finite differences
    # along a random direction in parameter space
    # (a unit-norm direction and a small step, so no ReLU changes its activation pattern)
    d = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(2), x.shape), params["critic"])
    dn = float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(d))))
    d = jax.tree.map(lambda x: x / dn, d)
    f = lambda t: float(score_matching_loss({**params, "critic": jax.tree.map(lambda p, v: p + t * v, params["critic"], d)}, b, jax.random.PRNGKey(1), learner.config)[0])
    fd = (f(1e-3) - f(-1e-3)) / 2e-3
    an = float(sum(jnp.sum(g * v) for g, v in zip(jax.tree.leaves(grads["critic"]), jax.tree.leaves(d))))
    np.testing.assert_allclose(an, fd, rtol=2e-2)


def test_muon_routing_of_smac_parameters():
    learner = smac({"optimizer": "muon"})
    params = learner.init(jax.random.PRNGKey(0)).params
    for group in ("critic", "alpha", "actor"):
        part = muon_partition(params[group])
        flat = jax.tree_util.tree_flatten_with_path(part)[0]
        for path, branch in flat:
            name, module = path[-1].key, path[-2].key
            hidden = module.startswith("dense_") and module != "dense_0"
            assert branch == ("muon" if name == "kernel" and hidden else "adam"), (group, path, branch)
    crit = muon_partition(params["critic"])["params"]["q"]["mlp"]
    assert crit["dense_1"]["kernel"] == "muon" and params["critic"]["params"]["q"]["mlp"]["dense_1"]["kernel"].ndim == 3
    assert crit["dense_1"]["bias"] == "adam" and params["critic"]["params"]["q"]["mlp"]["dense_1"]["bias"].ndim == 2
    # the frozen score network is not optimised at all
    assert "score" not in learner.optimizers()


def test_smac_update_and_handover_to_online_learners():
    learner = smac()
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    step = jax.jit(jax.vmap(learner.update, in_axes=(0, None, 0)))
    b = batch(32)
    for i in range(3):
        states, m = step(states, b, jax.random.split(jax.random.PRNGKey(i), 2))
    for k, v in m.items():
        assert np.all(np.isfinite(np.asarray(v))), k
    assert float(np.asarray(m["sm_loss"]).mean()) > 0
    st = jax.tree.map(lambda x: x[0], states)
    obs = b.obs
    mean_off = np.asarray(learner.act(st, obs, jax.random.PRNGKey(0), True))
    for name in ("sac", "td3"):
        on = make_learner(name, OBS, ACT, {"hidden_dims": (8, 8)})
        s_on = on.transfer(jax.random.PRNGKey(1), st, learner)
        assert "score" not in s_on.params and "alpha" not in s_on.params
        np.testing.assert_allclose(np.asarray(on.act(s_on, obs, jax.random.PRNGKey(0), True)), mean_off, rtol=1e-6)


def test_set_score_params_leaves_the_callers_config_alone():
    """The learner switches to a copy of its config carrying the new score config."""
    import ml_collections

    learner = make_learner("smac", 3, 1, dict(hidden_dims=(4, 4)))
    before = learner.config
    original = before.score_config.to_dict()
    new_cfg = ml_collections.ConfigDict(original)
    new_cfg.hidden_dim = original["hidden_dim"] + 1
    learner.set_score_params({"dummy": 0}, new_cfg)
    assert before.score_config.to_dict() == original
    assert learner.config.score_config.hidden_dim == original["hidden_dim"] + 1
    assert learner.config is not before


def test_run_plot_shows_smacs_diagnostics_and_no_panels_for_sac(tmp_path):
    """SMAC's update logs every metric the run plot's diagnostic panels draw (cosine, alpha_psi,
    |grad_a Q| against |score|, Q against the Monte-Carlo return); a SAC run logs no panel's
    full set, so its plot stays the single evaluation curve."""
    from PIL import Image

    from smac_jax.training.logger import DIAGNOSTIC_PANELS, MetricsLog, diagnostic_panels, plot_evaluations

    def run_log(name, learner):
        states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
        _, m = jax.jit(jax.vmap(learner.update, in_axes=(0, None, 0)))(
            states, batch(16), jax.random.split(jax.random.PRNGKey(1), 2))
        log = MetricsLog(str(tmp_path / f"{name}.jsonl"))
        log.write([{"phase": "offline", "step": step, "seed": seed, "eval_return": float(step + seed),
                    **{k: float(np.asarray(v)[seed]) for k, v in m.items()}}
                   for step in (100, 200) for seed in (0, 1)])
        return log

    smac_log = run_log("smac", smac())
    sac_log = run_log("sac", make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8)}))
    training_panels = [p for p in DIAGNOSTIC_PANELS if "q_start" not in p[1]]  # the evaluation logs q_start
    assert diagnostic_panels(smac_log) == training_panels
    assert diagnostic_panels(sac_log) == []
    plot_evaluations(smac_log, str(tmp_path / "smac.png"))
    plot_evaluations(sac_log, str(tmp_path / "sac.png"))
    h_smac = Image.open(tmp_path / "smac.png").size[1]
    h_sac = Image.open(tmp_path / "sac.png").size[1]
    assert h_smac > 1.5 * h_sac  # the evaluation curve plus two rows of panels


@pytest.mark.parametrize("sm_target, shrink", [("direction", 1.0), ("direction", 0.3), ("direction", 0.0),
                                               ("rotation", 1.0)])
def test_direction_target_shrinks_the_action_gradient_and_rotation_does_not(sm_target, shrink):
    """d L_SM / d g, with g = grad_a Q: "direction" (||g - sg(|g|) s/|s|||^2) has a component along
    g, 2 |g| (1 - cos) per critic (over the B states of the mean), so descent also flattens Q in
    the actions; ``shrink`` scales that component; "rotation" (2 sg(|g|^2)(1 - cos)) has none: its
    gradient is orthogonal to g. The orthogonal component, -2 |g| (s/|s| - cos g/|g|), is the same
    for all of them."""
    from smac_jax.learners.smac import matching_loss

    rng = np.random.default_rng(0)
    g0 = jnp.asarray(rng.normal(size=(2, 7, ACT)), jnp.float32)
    s = jnp.asarray(rng.normal(size=(7, ACT)), jnp.float32)
    grad = np.asarray(jax.grad(lambda g: matching_loss(g, s, jnp.ones(7), sm_target, shrink)[0])(g0), np.float64)
    g0, s = np.asarray(g0, np.float64), np.asarray(s, np.float64)
    norm = np.linalg.norm(g0, axis=-1, keepdims=True)
    along = np.sum(grad * g0, -1) / norm[..., 0]  # the component along each g
    cos = np.sum(g0 * s[None], -1) / (norm[..., 0] * np.linalg.norm(s, axis=-1)[None])
    assert float(matching_loss(g0, s, np.ones(7), sm_target, shrink)[0]) == pytest.approx(
        np.sum(2 * np.sum(g0**2, -1) * (1 - cos), 0).mean(), rel=1e-5)
    expected_along = 2 * norm[..., 0] * (1 - cos) / 7 * (shrink if sm_target == "direction" else 0.0)
    np.testing.assert_allclose(along, expected_along, rtol=1e-4, atol=1e-5)
    unit_s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    ortho = grad - along[..., None] * g0 / norm
    np.testing.assert_allclose(ortho, -2 * norm * (unit_s[None] - cos[..., None] * g0 / norm) / 7, rtol=1e-4, atol=1e-5)


def _matching_loss_with_linalg_norm(g, score, alpha, sm_target, shrink):
    """The same loss written with jnp.linalg.norm (NaN gradient at g = 0): the reference elsewhere."""
    sg = jax.lax.stop_gradient
    nrm = lambda x, **kw: jnp.linalg.norm(x, axis=-1, **kw)
    cos = jnp.sum(g * score[None], -1) / (nrm(g) * nrm(score)[None] + 1e-8)
    if sm_target == "alpha_score":
        per = jnp.sum((g - alpha[None, :, None] * score[None]) ** 2, -1)
    else:
        per = 2.0 * sg(jnp.sum(g**2, -1)) * (1.0 - cos)
        if sm_target == "direction":
            unit = score / (nrm(score, keepdims=True) + 1e-8)
            per = per + shrink * (jnp.sum((g - sg(nrm(g, keepdims=True)) * unit[None]) ** 2, -1) - per)
    return jnp.sum(per, axis=0).mean()


@pytest.mark.parametrize("sm_target", ["direction", "rotation", "alpha_score"])
def test_matching_loss_gradient_is_finite_where_an_action_gradient_is_zero(sm_target):
    """A ReLU critic's action gradient can be exactly zero at a sampled action (it was, for one of
    64 states, in a 6-seed SMAC run on Pendulum that then diverged). The loss's gradient must stay
    finite there, and be unchanged elsewhere: equal to that of the loss written with
    jnp.linalg.norm, whose gradient at g = 0 is NaN."""
    from smac_jax.learners.smac import matching_loss

    rng = np.random.default_rng(1)
    g = rng.normal(size=(2, 5, ACT)).astype(np.float32)
    s = jnp.asarray(rng.normal(size=(5, ACT)), jnp.float32)
    alpha = jnp.asarray(np.abs(rng.normal(size=5)), jnp.float32)
    loss_fn = lambda x: matching_loss(x, s, alpha, sm_target, 0.3)[0]
    ref_fn = lambda x: _matching_loss_with_linalg_norm(x, s, alpha, sm_target, 0.3)
    # without a zero: the same value and gradient, bit for bit
    assert float(loss_fn(jnp.asarray(g))) == float(ref_fn(jnp.asarray(g)))
    np.testing.assert_array_equal(jax.grad(loss_fn)(jnp.asarray(g)), jax.grad(ref_fn)(jnp.asarray(g)))
    g0 = g.copy()
    g0[1, 3] = 0.0
    if sm_target != "alpha_score":
        assert not np.all(np.isfinite(np.asarray(jax.grad(ref_fn)(jnp.asarray(g0)))))  # the failure this guards
    loss, cos = matching_loss(jnp.asarray(g0), s, alpha, sm_target, 0.3)
    grad = np.asarray(jax.grad(loss_fn)(jnp.asarray(g0)))
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad)) and float(cos[1, 3]) == 0.0
    if sm_target == "alpha_score":  # d/dg ||g - alpha s||^2 / B at g = 0
        np.testing.assert_allclose(grad[1, 3], -2 * np.asarray(alpha)[3] * np.asarray(s)[3] / 5, rtol=1e-6)
    else:  # 2 |g|^2 (1 - cos) and ||g - |g| s/|s|||^2 are flat at g = 0
        np.testing.assert_array_equal(grad[1, 3], 0.0)
    # every other state's gradient is the reference's (states enter the mean independently)
    mask = np.ones(g.shape[:2], bool)
    mask[1, 3] = False
    np.testing.assert_array_equal(grad[mask], np.asarray(jax.grad(ref_fn)(jnp.asarray(g)))[mask])


def test_sm_shrink_out_of_range_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"sm_shrink=1\.5 must be a number in \[0, 1\]"):
        smac({"sm_shrink": 1.5})
