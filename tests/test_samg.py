"""SAMG (docs/samg.md): the C-VAE, the coefficient p(s, a), the guided TD targets of the samg_*
learners against an independent float64 NumPy computation, their jitted seed-vmapped updates, the
adaptive update and the "even" / "random" ablations.

The C-VAE is trained briefly (a (32, 32) network) on a small synthetic dataset whose next state
depends on the action: s ~ N(0, 3^2 I) (unstandardised, as the C-VAE sees D4RL data),
a = clip(0.6 tanh(W s / 3) + 0.2 eps), s' = s + 2 M a + 0.3 eps'. Random actions U[-1, 1]^|A| on
the same states are out of distribution. The model goes through ``fit_or_load_cvae`` (fit, save,
load back). Programs are compiled without LLVM's optimisations (tests/test_transfer_matrix.py
does the same): compile time, not run time, is what costs here.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.special import erfc
from scipy.stats import norm

from smac_jax.data import replay
from smac_jax.learners import ConfigError, TransferError, make_learner
from smac_jax.learners import iql as iql_mod
from smac_jax.learners import sac as sac_mod
from smac_jax.learners import samg
from smac_jax.samg import adaptive, confidence, cvae, store
from smac_jax.types import Transitions

OBS, ACT = 3, 2
N_DATA = 2000
TINY = {"hidden_dims": (8, 8), "batch_size": 16}
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
RTOL, ATOL = 1e-4, 1e-5


def aot(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=COMPILER_OPTIONS)


def f64(x):
    return np.asarray(x, np.float64)


def tiny_cvae_config(**kw):
    """A small, short fit. The KL weight is 0.5, not the library's default 0.05: on
    this noisy synthetic data a short fit does not collapse at 0.5, and the stronger compression
    ranks random actions further below the data's pairs, which the coefficient tests rely on
    (docs/samg.md, "Posterior collapse", has the measurements on MuJoCo data behind 0.05)."""
    c = cvae.default_cvae_config()
    c.hidden_dims, c.steps, c.batch_size, c.chunk, c.beta_kl = (32, 32), 1_500, 64, 500, 0.5
    c.update(kw)
    return c


def transitions(obs, action, next_obs, reward=None, terminated=None):
    n = obs.shape[0]
    z = np.zeros(n, np.float32)
    return Transitions(
        obs=jnp.asarray(obs, jnp.float32), action=jnp.asarray(action, jnp.float32),
        reward=jnp.asarray(z if reward is None else reward, jnp.float32), next_obs=jnp.asarray(next_obs, jnp.float32),
        terminated=jnp.asarray(z if terminated is None else terminated, jnp.float32), truncated=jnp.asarray(z),
        episode=jnp.full(n, -1, jnp.int32), rtg=jnp.asarray(z), mc_return=jnp.full(n, -jnp.inf, jnp.float32),
        traj_return=jnp.asarray(z),
    )


@dataclasses.dataclass
class FakeDataset:
    """What ``fit_or_load_cvae`` and ``prepare`` read of an ``OfflineDataset``."""

    transitions: Transitions
    dataset_id: str = "synthetic/samg-v0"
    normalize_obs: bool = False


def synthetic(seed=0, n=N_DATA):
    rng = np.random.default_rng(seed)
    w, m = rng.normal(size=(OBS, ACT)), rng.normal(size=(ACT, OBS))
    s = 3.0 * rng.normal(size=(n, OBS))
    a = np.clip(0.6 * np.tanh(s @ w / 3.0) + 0.2 * rng.normal(size=(n, ACT)), -1, 1)
    s2 = s + 2.0 * a @ m + 0.3 * rng.normal(size=(n, OBS))
    return s.astype(np.float32), a.astype(np.float32), s2.astype(np.float32), rng


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The C-VAE fitted through ``fit_or_load_cvae`` (and loaded back from disk)."""
    s, a, s2, rng = synthetic()
    ds = FakeDataset(transitions(s, a, s2))
    cfg = tiny_cvae_config()
    path = str(tmp_path_factory.mktemp("cvae"))
    params, stats, meta = store.fit_or_load_cvae(path, ds, cfg, progress=False)
    loaded, stats2, meta2 = store.fit_or_load_cvae(path, ds, cfg, progress=False)  # no refit
    for x, y in zip(jax.tree.leaves((params, stats)), jax.tree.leaves((loaded, stats2))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert meta2 == meta
    random_a = rng.uniform(-1, 1, size=a.shape).astype(np.float32)
    return dict(s=s, a=a, s2=s2, random_a=random_a, params=loaded, stats=stats2, meta=meta, cfg=cfg, path=path,
                dataset=ds)


def learner_config(**kw):
    c = ml_collections.ConfigDict(dict(coefficient="cvae", p_threshold=0.6, even_p=0.5, random_p_seed=0))
    c.update(kw)
    return c


# ---------------------------------------------------------------------------------------------
# The C-VAE and the coefficient
# ---------------------------------------------------------------------------------------------
def test_kl_on_data_clearly_above_zero(model):
    kl = model["meta"]["kl_on_data"]
    print(f"C-VAE KL term on the data after {model['cfg'].steps} steps: {kl:.4f} "
          f"(reconstruction error {model['meta']['recon_on_data']:.4f}, fitted in {model['meta']['fit_seconds']:.1f} s)")
    assert kl > 2e-3, f"posterior collapse: KL on the data {kl}"
    # Independent check of the reported value: the mean KL of the encoder outputs over the data.
    z_m, z_v = (f64(z) for z in cvae.encode(model["params"], jnp.asarray(model["s"]), jnp.asarray(model["a"]),
                                            model["cfg"]))
    ref = (0.5 * (np.exp(2 * z_v) + z_m**2 - 1) - z_v).mean()
    np.testing.assert_allclose(kl, ref, rtol=1e-3)
    # The latent normals are fitted over the whole dataset.
    np.testing.assert_allclose(np.asarray(model["stats"]["mu_m"]), z_m.mean(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model["stats"]["sigma_v"]), z_v.std(0), rtol=1e-3, atol=1e-6)


def test_literal_eq2_decoder_is_selectable_and_keeps_less_in_its_latent(model, tmp_path):
    """``decoder_action=True`` is Eq. 2's p(s' | z, s, a): its decoder reads [z, s, a], and since the
    action no longer has to pass through z, the KL on the same data ends lower than with the
    default decoder p(s' | z, s) (the fixture's model)."""
    params, _, meta = store.fit_or_load_cvae(str(tmp_path), model["dataset"], tiny_cvae_config(decoder_action=True),
                                             progress=False)
    z_dim = cvae.latent_dim(model["cfg"], ACT)
    first = lambda p: p["params"]["decoder"]["dense_0"]["kernel"].shape[0]  # noqa: E731
    assert first(params) == z_dim + OBS + ACT
    assert first(model["params"]) == z_dim + OBS  # the default decoder p(s' | z, s)
    print(f"KL on the data: decoder p(s'|z,s) {model['meta']['kl_on_data']:.4f}, "
          f"p(s'|z,s,a) {meta['kl_on_data']:.4f}")
    assert meta["kl_on_data"] < 0.75 * model["meta"]["kl_on_data"]


def test_saved_model_with_other_hyperparameters_is_refused(model):
    with pytest.raises(store.CVAEMismatch, match="hidden_dims"):
        store.fit_or_load_cvae(model["path"], model["dataset"], tiny_cvae_config(hidden_dims=(16, 16)), progress=False)


def test_coefficient_range_threshold_and_ood(model):
    cfg = learner_config(cvae=model["cfg"])
    p_fn = aot(lambda o, a: confidence.coefficient(model["params"], model["stats"], o, a, cfg),
               model["s"], model["a"])
    p_data, p_rand = np.asarray(p_fn(model["s"], model["a"])), np.asarray(p_fn(model["s"], model["random_a"]))
    # p_int against scipy in float64: 0.5 t_m + 0.5 t_v, t = mean_k 2 (1 - Phi(|z - mu| / sigma)).
    z_m, z_v = (f64(z) for z in cvae.encode(model["params"], jnp.asarray(model["s"]), jnp.asarray(model["a"]),
                                            model["cfg"]))
    st = {k: f64(v) for k, v in model["stats"].items()}
    t_m = (2 * (1 - norm.cdf(np.abs(z_m - st["mu_m"]) / st["sigma_m"]))).mean(-1)
    t_v = (2 * (1 - norm.cdf(np.abs(z_v - st["mu_v"]) / st["sigma_v"]))).mean(-1)
    p_int = 0.5 * t_m + 0.5 * t_v
    above = p_int >= 0.6
    np.testing.assert_allclose(p_data[above], p_int[above], rtol=1e-4, atol=1e-5)
    near = np.abs(p_int - 0.6) < 1e-4  # float32 vs float64 may disagree on the threshold side
    assert (p_data[~above & ~near] == 0.0).all()  # exactly 0 below the threshold
    for p in (p_data, p_rand):
        assert ((p == 0.0) | ((p >= 0.6) & (p <= 1.0))).all()
    # In distribution scores higher than uniformly random actions on the same states.
    print(f"p on data: mean {p_data.mean():.3f}, nonzero {np.mean(p_data > 0):.3f}; "
          f"random actions: mean {p_rand.mean():.3f}, nonzero {np.mean(p_rand > 0):.3f}")
    assert p_data.mean() > 2.5 * p_rand.mean()
    assert np.mean(p_data > 0) > 2.5 * np.mean(p_rand > 0)
    assert np.median(p_int) > 0.45  # in distribution, p_int is about uniform over the data


def test_tail_probability_matches_erfc():
    rng = np.random.default_rng(3)
    z, mu, sigma = rng.normal(size=(6, 4)), rng.normal(size=4), rng.uniform(0.2, 2.0, size=4)
    got = confidence.tail_probability(jnp.asarray(z), jnp.asarray(mu), jnp.asarray(sigma))
    np.testing.assert_allclose(got, erfc(np.abs(z - mu) / (sigma * np.sqrt(2))).mean(-1), rtol=1e-5)


def test_even_and_random_ablations(model):
    s, a = jnp.asarray(model["s"]), jnp.asarray(model["a"])
    even = confidence.coefficient(None, None, s, a, learner_config(coefficient="even"))
    np.testing.assert_array_equal(np.asarray(even), 0.5)
    rand = learner_config(coefficient="random")
    p = np.asarray(confidence.coefficient(None, None, s, a, rand))
    assert ((p >= 0) & (p < 1)).all() and np.unique(p).size > 0.99 * p.size
    assert abs(p.mean() - 0.5) < 0.03 and abs(np.mean(p < 0.25) - 0.25) < 0.03  # about U[0, 1]
    # Fixed per transition (independent of the batch it arrives in), different with another seed.
    perm = np.random.default_rng(0).permutation(p.size)
    np.testing.assert_array_equal(np.asarray(confidence.coefficient(None, None, s[perm], a[perm], rand)), p[perm])
    other = np.asarray(confidence.coefficient(None, None, s, a, learner_config(coefficient="random", random_p_seed=1)))
    assert np.corrcoef(p, other)[0, 1] < 0.1
    # The ablation learners need no C-VAE and never run the adaptive update.
    for mode in ("even", "random"):
        learner = make_learner("samg_sac", OBS, ACT, {**TINY, "coefficient": mode})
        assert learner.host_update_every == 0
        off = make_learner("sac", OBS, ACT, TINY)
        k = jax.random.PRNGKey(0)
        jax.eval_shape(lambda kk, st: learner.transfer(kk, st, off), k, jax.eval_shape(off.init, k))


# ---------------------------------------------------------------------------------------------
# The guided targets against float64 NumPy
# ---------------------------------------------------------------------------------------------
B = 8


def relu(x):
    return np.maximum(x, 0.0)


def np_mlp(p, x, out=True):
    i = 0
    while f"dense_{i}" in p:
        x = relu(x @ f64(p[f"dense_{i}"]["kernel"]) + f64(p[f"dense_{i}"]["bias"]))
        i += 1
    return x @ f64(p["out"]["kernel"]) + f64(p["out"]["bias"]) if out else x


def np_ensemble(params, x):
    """(E, B) outputs of an ``nn.vmap`` ensemble (kernels (E, in, out))."""
    E = f64(params["out"]["kernel"]).shape[0]
    return np.stack([np_mlp(jax.tree.map(lambda v: f64(v)[e], params), x)[:, 0] for e in range(E)])


def np_q(critic, obs, act):
    return np_ensemble(critic["params"]["q"]["mlp"], np.concatenate([f64(obs), f64(act)], -1))


def np_v(value, obs):
    return np_ensemble(value["params"]["v"]["mlp"], f64(obs))[0]


def np_p(cvae_params, stats, obs, act, p_m, cfg):
    enc = cvae_params["params"]["encoder"]
    h = np_mlp(enc["trunk"], np.concatenate([f64(obs), f64(act)], -1), out=False)
    z_m = h @ f64(enc["mean"]["kernel"]) + f64(enc["mean"]["bias"])
    z_v = np.clip(h @ f64(enc["log_std"]["kernel"]) + f64(enc["log_std"]["bias"]), cfg.log_std_min, cfg.log_std_max)
    st = {k: f64(v) for k, v in stats.items()}
    t = lambda z, mu, sd: (2 * (1 - norm.cdf(np.abs(z - mu) / sd))).mean(-1)
    p_int = 0.5 * t(z_m, st["mu_m"], st["sigma_m"]) + 0.5 * t(z_v, st["mu_v"], st["sigma_v"])
    return np.where(p_int >= p_m, p_int, 0.0)


def perturb(tree, seed, scale):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x) + scale * rng.normal(size=np.shape(x)), jnp.float32), tree)


def reference_batch():
    rng = np.random.default_rng(5)
    term = np.zeros(B, np.float32)
    term[1] = 1.0
    return transitions(rng.normal(size=(B, OBS)), rng.uniform(-1, 1, (B, ACT)), rng.normal(size=(B, OBS)),
                       reward=rng.normal(size=B), terminated=term)


def guided_state(name, source_groups):
    """A handed-over samg learner with tiny networks whose groups all differ, and a tiny C-VAE
    whose normals put some of the batch below the threshold and some above."""
    cfg = tiny_cvae_config(hidden_dims=(4, 4))
    learner = make_learner(name, OBS, ACT, {**TINY, "hidden_dims": (4, 4), "gamma": 0.9, "cvae": cfg,
                                            "p_threshold": 0.45})
    batch = reference_batch()
    cv = perturb(aot(lambda k: cvae.init_cvae(k, OBS, ACT, cfg), jax.random.PRNGKey(1))(jax.random.PRNGKey(1)), 2, 0.5)
    learner.set_cvae(cv, aot(lambda c, b: confidence.fit_normals(*cvae.encode(c, b.obs, b.action, cfg)), cv, batch)(
        cv, batch))
    state = aot(learner.init, jax.random.PRNGKey(3))(jax.random.PRNGKey(3))
    params = dict(state.params)
    for i, g in enumerate(source_groups):
        params[g] = perturb(params[g], 10 + i, 0.4)
    params["guidance"] = jnp.ones((), jnp.float32)
    if "log_temp" in params:
        params["log_temp"] = jnp.asarray(np.log(0.3), jnp.float32)
    return learner, params, batch


def check_p_mix(learner, params, batch, p_jax):
    p = np_p(params["cvae"], params["cvae_stats"], batch.obs, batch.action, 0.45, learner.config.cvae)
    assert 0 < np.count_nonzero(p) < B, p  # both cases in the batch
    np.testing.assert_allclose(p_jax, p, rtol=1e-4, atol=1e-6)
    return p


def test_guided_sac_target_against_numpy():
    learner, params, batch = guided_state("samg_sac", ("actor", "critic", "target_critic", "offline_critic"))
    cfg = learner.config
    key = jax.random.PRNGKey(11)

    def jax_side(params, batch, key):
        off = {**params, "guidance": jnp.zeros((), jnp.float32)}
        return (samg.guidance_coefficient(params, batch, cfg), sac_mod.td_target(params, batch, key, cfg, samg.guided_next_q),
                learner.critic_loss_fn(params, batch, key, cfg)[0],
                sac_mod.td_target(off, batch, key, cfg, samg.guided_next_q), sac_mod.td_target(off, batch, key, cfg))

    p_jax, y, loss, y_off, y_plain = aot(jax_side, params, batch, key)(params, batch, key)
    p = check_p_mix(learner, params, batch, p_jax)

    # a' ~ pi(s') with distrax's draw (tests/test_sac_td3.py checks the convention).
    actor = params["actor"]["params"]
    h = np_mlp(actor["trunk"], f64(batch.next_obs), out=False)
    mean = h @ f64(actor["mean"]["kernel"]) + f64(actor["mean"]["bias"])
    log_std = np.clip(h @ f64(actor["log_std"]["kernel"]) + f64(actor["log_std"]["bias"]), -20, 2)
    eps = f64(jax.random.normal(key, (1, B, ACT))[0])
    u = mean + np.exp(log_std) * eps
    a2 = np.tanh(u)
    logp = (-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1) - np.log(1 - np.tanh(u) ** 2).sum(-1)
    q_bar = np_q(params["target_critic"], batch.next_obs, a2).min(0)
    q_off = np_q(params["offline_critic"], batch.next_obs, a2).min(0)
    bracket = (1 - p) * q_bar + p * q_off - 0.3 * logp  # the entropy term on the whole bracket
    ref = f64(batch.reward) + 0.9 * (1 - f64(batch.terminated)) * bracket
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)
    assert not np.allclose(q_bar, q_off)
    # The learner's critic loss uses that target.
    q = np_q(params["critic"], batch.obs, batch.action)
    np.testing.assert_allclose(float(loss), ((q - ref[None]) ** 2).mean(1).sum(), rtol=RTOL)
    # Guidance off (a samg learner never handed an offline critic): the plain SAC target.
    np.testing.assert_allclose(y_off, y_plain, rtol=1e-6)


def test_guided_iql_target_against_numpy():
    learner, params, batch = guided_state("samg_iql", ("critic", "value", "offline_value"))
    cfg = learner.config
    key = jax.random.PRNGKey(12)

    def jax_side(params, batch, key):
        return (samg.guidance_coefficient(params, batch, cfg),
                iql_mod.td_target(params, batch, key, cfg, samg.guided_next_value),
                learner.critic_loss_fn(params, batch, key, cfg))

    p_jax, y, (loss, info) = aot(jax_side, params, batch, key)(params, batch, key)
    p = check_p_mix(learner, params, batch, p_jax)
    v, v_off = np_v(params["value"], batch.next_obs), np_v(params["offline_value"], batch.next_obs)
    assert not np.allclose(v, v_off)
    ref = f64(batch.reward) + 0.9 * (1 - f64(batch.terminated)) * ((1 - p) * v + p * v_off)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)
    q = np_q(params["critic"], batch.obs, batch.action)
    np.testing.assert_allclose(float(loss), ((q - ref[None]) ** 2).mean(1).sum(), rtol=RTOL)
    np.testing.assert_allclose(float(info["target_mean"]), ref.mean(), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------
# Hand-over, updates, the adaptive update
# ---------------------------------------------------------------------------------------------
BASES = {"samg_sac": "sac", "samg_awac": "awac", "samg_cql": "cql", "samg_calql": "calql", "samg_iql": "iql"}


def test_transfer_errors(model):
    k = jax.random.PRNGKey(0)
    small = {**TINY, "cvae": tiny_cvae_config()}
    unprepared = make_learner("samg_cql", OBS, ACT, small)
    cql = make_learner("cql", OBS, ACT, TINY)
    with pytest.raises(ConfigError, match="samg_cql needs its C-VAE"):
        jax.eval_shape(lambda kk, st: unprepared.transfer(kk, st, cql), k, jax.eval_shape(cql.init, k))
    for src, dst, what in (("bc", "samg_sac", "'critic'"), ("cql", "samg_iql", "'value'")):
        off, on = make_learner(src, OBS, ACT, TINY), make_learner(dst, OBS, ACT, small)
        on.set_cvae(model["params"], model["stats"])
        with pytest.raises(TransferError, match=f"{src} -> {dst}: .*frozen {what}"):
            jax.eval_shape(lambda kk, st: on.transfer(kk, st, off), k, jax.eval_shape(off.init, k))
    with pytest.raises(ConfigError, match="coefficient"):
        make_learner("samg_sac", OBS, ACT, {"coefficient": "uniform"})


@pytest.mark.parametrize("name", list(BASES))
def test_vmapped_update(name, model):
    """Hand-over from the base learner (2 seeds), then one jitted, seed-vmapped update: finite
    metrics, the frozen groups untouched, guidance on."""
    on = make_learner(name, OBS, ACT, {**TINY, "cvae": model["cfg"]})
    on.set_cvae(model["params"], model["stats"])
    off = make_learner(BASES[name], OBS, ACT, TINY)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    idx = np.arange(16) * 7
    batch = transitions(model["s"][idx], model["random_a"][idx] * 0.5 + model["a"][idx] * 0.5, model["s2"][idx],
                        reward=np.ones(16))

    def program(keys, batch):  # what pipeline.run does: init, hand-over, then vmapped updates
        off_states = jax.vmap(off.init)(keys)
        states = jax.vmap(lambda k, s: on.transfer(k, s, off))(keys, off_states)
        return off_states, states, jax.vmap(on.update, in_axes=(0, None, 0))(states, batch, keys)

    off_states, states, (new, metrics) = aot(program, keys, batch)(keys, batch)
    for k, v in metrics.items():
        assert np.isfinite(np.asarray(v)).all(), (name, k)
    p = np.asarray(metrics["samg_p_mean"])
    assert ((p >= 0) & (p <= 1)).all()
    frozen = "offline_value" if name == "samg_iql" else "offline_critic"
    source = "value" if name == "samg_iql" else "critic"
    for g in (frozen, "cvae", "cvae_stats", "guidance"):
        for x, y in zip(jax.tree.leaves(new.params[g]), jax.tree.leaves(states.params[g])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(states.params[frozen]), jax.tree.leaves(off_states.params[source])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(np.asarray(new.params["guidance"]), 1.0)
    assert set(new.params) == set(states.params) and "samg_p" not in new.params
    np.testing.assert_array_equal(np.asarray(new.step), [1, 1])


def test_periodic_host_update(model):
    """Every ``adaptive_every`` steps: the C-VAE trained on the OOD rows with the smallest Bellman
    error, the normals refitted, the period's target saved; at other steps nothing changes."""
    every = 64
    on = make_learner("samg_sac", OBS, ACT, {**TINY, "cvae": model["cfg"], "adaptive_every": every,
                                            "adaptive_steps": 20, "refit_rows": 500, "cvae_path": model["path"]})
    on.prepare(model["dataset"], "/nonexistent", progress=False)  # loads the saved model from cvae_path
    assert on.reference[0].shape == (500, OBS)
    on.compiler_options = COMPILER_OPTIONS
    off = make_learner("sac", OBS, ACT, TINY)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = aot(jax.vmap(lambda k: on.transfer(k, off.init(k), off)), keys)(keys)
    # Seed 0's buffer: half dataset pairs, half random actions; seed 1's: dataset pairs only.
    buf = replay.empty_buffer(OBS, ACT, 100)
    bufs = []
    for seed_ood in (True, False):
        idx = np.arange(80)
        a = np.where((idx % 2 == 0)[:, None] & seed_ood, model["random_a"][idx], model["a"][idx])
        bufs.append(replay.insert_many(buf, transitions(model["s"][idx], a, model["s2"][idx])))
    buffers = jax.tree.map(lambda *x: jnp.stack(x), *bufs)
    # The rows of the period: the last 64 inserted, newest first.
    rows, valid = adaptive.period_rows(bufs[0], every)
    np.testing.assert_array_equal(np.asarray(rows.obs), model["s"][79:15:-1])
    assert np.asarray(valid).all()

    assert on.periodic_host_update(states, buffers, every + 1) is states  # not a period boundary
    new = on.periodic_host_update(states, buffers, every)
    info = on.last_host_update
    print("adaptive update:", {k: np.asarray(v).tolist() for k, v in info.items()})
    n_ood, n_sel = np.asarray(info["n_ood"]), np.asarray(info["n_selected"])
    assert n_ood[0] > 0 and (n_sel == np.ceil(0.1 * n_ood)).all()
    changed = [not all(np.array_equal(np.asarray(x)[i], np.asarray(y)[i]) for x, y in
                       zip(jax.tree.leaves(new.params["cvae"]), jax.tree.leaves(states.params["cvae"])))
               for i in range(2)]
    assert changed[0] and changed[1] == bool(n_sel[1] > 0)
    assert not np.array_equal(np.asarray(new.params["cvae_stats"]["mu_m"])[0],
                              np.asarray(states.params["cvae_stats"]["mu_m"])[0])
    # No two leaves share a buffer (the online loop donates the states).
    ptrs = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(new)]
    assert len(set(ptrs)) == len(ptrs)
    # The snapshot is the target critic at this boundary; the other groups are untouched.
    for x, y in zip(jax.tree.leaves(new.extra["period_target"]), jax.tree.leaves(states.params["target_critic"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for g in ("actor", "critic", "offline_critic"):
        for x, y in zip(jax.tree.leaves(new.params[g]), jax.tree.leaves(states.params[g])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_select_mastered_picks_smallest_errors_among_ood():
    p = jnp.asarray([0.0, 0.7, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    err = jnp.asarray([5.0, 0.0, 1.0, 9.0, 0.5, 0.1, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0])
    valid = jnp.arange(12) < 11  # the last row does not exist yet
    order, k, n_ood = adaptive.select_mastered(p, err, valid, 0.2)
    assert int(n_ood) == 9 and int(k) == 2  # ceil(0.2 * 9)
    np.testing.assert_array_equal(np.asarray(order)[:2], [4, 2])  # errors 0.5 and 1.0; p > 0 rows excluded
