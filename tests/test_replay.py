"""Replay buffer (smac_jax.data.replay) and the Muon / Adam routing of smac_jax.optim (docs/algorithms.md)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from smac_jax.data import replay
from smac_jax.learners import make_learner
from smac_jax.optim import make_optimizer, muon_partition
from smac_jax.types import Transitions

OBS, ACT = 3, 2


def rows(n, start=0, episode=None, traj_return=None):
    """n distinguishable transitions: reward = start + i, obs filled with the same number."""
    v = np.arange(start, start + n, dtype=np.float32)
    return Transitions(
        obs=np.repeat(v[:, None], OBS, 1),
        action=np.repeat(v[:, None] / 1000.0, ACT, 1),
        reward=v,
        next_obs=np.repeat(v[:, None] + 0.5, OBS, 1),
        terminated=(v % 3 == 0).astype(np.float32),
        truncated=(v % 5 == 0).astype(np.float32),
        episode=np.full(n, -1, np.int32) if episode is None else np.asarray(episode, np.int32),
        rtg=v * 2,
        mc_return=v * 3,
        traj_return=np.zeros(n, np.float32) if traj_return is None else np.asarray(traj_return, np.float32),
    )


def row(t, i):
    return jax.tree.map(lambda x: x[i], t)


# ---------------------------------------------------------------------------------------------
# Ring buffer
# ---------------------------------------------------------------------------------------------
def test_insert_wraps_around_at_capacity():
    cap = 4
    buf = replay.empty_buffer(OBS, ACT, cap)
    assert buf.capacity == cap and int(buf.ptr) == 0 and int(buf.size) == 0
    data = rows(6, start=10)
    insert = jax.jit(replay.insert)
    expected_ptr = [1, 2, 3, 0, 1, 2]
    expected_size = [1, 2, 3, 4, 4, 4]
    for i in range(6):
        buf = insert(buf, row(data, i))
        assert int(buf.ptr) == expected_ptr[i]
        assert int(buf.size) == expected_size[i]
    # Rows 0 and 1 were overwritten by the 5th and 6th transitions (rewards 14, 15).
    np.testing.assert_array_equal(buf.data.reward, [14.0, 15.0, 12.0, 13.0])
    np.testing.assert_array_equal(buf.data.obs[:, 0], [14.0, 15.0, 12.0, 13.0])
    np.testing.assert_array_equal(buf.data.terminated, [0.0, 1.0, 1.0, 0.0])  # 15 % 3 == 0, 12 % 3 == 0
    np.testing.assert_array_equal(buf.data.truncated, [0.0, 1.0, 0.0, 0.0])  # 15 % 5 == 0
    assert buf.data.episode.dtype == jnp.int32


def test_pack_unpack_round_trip_and_packed_insert():
    data = rows(4, start=3, episode=[0, 1, 2, 70_000], traj_return=[1.5, -2.0, 0.0, 9.0])
    data = data.replace(mc_return=np.array([1.0, -np.inf, 2.0, 3.0], np.float32))
    packed = replay.pack(data, np)
    assert packed.shape == (4, replay.row_width(OBS, ACT)) and packed.dtype == np.float32
    back = replay.unpack(jnp.asarray(packed), OBS, ACT)
    for name in replay.FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name), err_msg=name)
    assert back.episode.dtype == jnp.int32
    # A packed row inserts exactly like the Transitions it came from.
    a = replay.insert(replay.empty_buffer(OBS, ACT, 5), row(data, 3))
    b = replay.insert(replay.empty_buffer(OBS, ACT, 5), packed[3])
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.data.mc_return[:2], [3.0, replay.NO_MC_RETURN])  # the empty row keeps -inf
    with pytest.raises(ValueError, match="episode indices"):
        replay.insert_many(replay.empty_buffer(OBS, ACT, 5), rows(1, episode=[2**24]))


def test_online_step_trains_on_the_transition_it_inserts():
    """One dispatch inserts, then samples: a fresh buffer's only row is the one just inserted, per seed."""
    from smac_jax.training.online import make_online_step

    class Probe:  # a learner whose update reports the minibatch it saw
        config = ml_collections.ConfigDict({"batch_size": 8})

        def update(self, state, batch, key):
            return state + 1.0, {"reward_min": batch.reward.min(), "reward_max": batch.reward.max()}

        def act(self, state, obs, key, deterministic):
            return obs[:ACT] + state

    step = make_online_step(Probe(), 2, None, train=True)
    bufs = jax.tree.map(lambda x: jnp.stack([x, x]), replay.empty_buffer(OBS, ACT, 16))
    tr = rows(2, start=7)  # seed 0 gets reward 7, seed 1 reward 8
    obs = np.ones((2, OBS), np.float32)
    states, bufs, actions, m = step(jnp.zeros(2), bufs, tr, obs, None, jax.random.split(jax.random.PRNGKey(0), 2), 1)
    np.testing.assert_array_equal(m["reward_min"], [7.0, 8.0])
    np.testing.assert_array_equal(m["reward_max"], [7.0, 8.0])
    np.testing.assert_array_equal(states, [2.0, 2.0])  # utd = 2 updates
    np.testing.assert_array_equal(actions, np.full((2, ACT), 3.0))  # acts after the updates
    np.testing.assert_array_equal(bufs.ptr, [1, 1])
    np.testing.assert_array_equal(bufs.data.next_obs[:, 0, 0], [7.5, 8.5])


def test_insert_many_and_capacity_error():
    buf = replay.empty_buffer(OBS, ACT, 10)
    buf = replay.insert_many(buf, rows(3, start=1))
    buf = replay.insert_many(buf, rows(4, start=100))
    assert int(buf.ptr) == 7 and int(buf.size) == 7
    np.testing.assert_array_equal(buf.data.reward[:7], [1, 2, 3, 100, 101, 102, 103])
    np.testing.assert_array_equal(buf.data.reward[7:], 0.0)
    np.testing.assert_array_equal(buf.data.next_obs[:7, 2], np.array([1, 2, 3, 100, 101, 102, 103]) + 0.5)
    with pytest.raises(ValueError, match="capacity 10"):
        replay.insert_many(replay.empty_buffer(OBS, ACT, 10), rows(11))


def test_insert_many_wraps_like_repeated_insert():
    """A block crossing the end of the ring lands where one-by-one inserts would put it (or is refused)."""
    buf = replay.insert_many(replay.empty_buffer(OBS, ACT, 10), rows(8, start=0))
    block = rows(5, start=50)
    one_by_one = buf
    for i in range(5):
        one_by_one = replay.insert(one_by_one, row(block, i))
    try:
        many = replay.insert_many(buf, block)
    except ValueError:
        return  # refusing a wrapping block is acceptable; silently misplacing it is not
    np.testing.assert_array_equal(many.data.reward, one_by_one.data.reward)
    assert int(many.ptr) == int(one_by_one.ptr) == 3
    assert int(many.size) == int(one_by_one.size) == 10


def test_sample_draws_only_from_filled_part():
    buf = replay.empty_buffer(OBS, ACT, 100)
    buf = replay.insert_many(buf, rows(3, start=1))
    batch = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 2000)
    assert batch.reward.shape == (2000,) and batch.obs.shape == (2000, OBS)
    vals, counts = np.unique(np.asarray(batch.reward), return_counts=True)
    np.testing.assert_array_equal(vals, [1.0, 2.0, 3.0])  # never an empty (zero) row
    assert counts.min() > 500  # roughly uniform over the 3 filled rows
    # Every sampled row is a consistent row of the store (fields not mixed between rows).
    np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)
    np.testing.assert_array_equal(batch.next_obs[:, 1], np.asarray(batch.reward) + 0.5)


@pytest.mark.parametrize("ratio,batch_size,n_off", [(0.5, 32, 16), (0.3, 32, 10), (0.0, 16, 0), (0.75, 10, 8)])
def test_sample_mixed_offline_share(ratio, batch_size, n_off):
    assert n_off == round(ratio * batch_size)
    offline = rows(50, start=1000, episode=np.arange(50) // 10)
    buf = replay.insert_many(replay.empty_buffer(OBS, ACT, 64), rows(5, start=1))
    for seed in range(3):
        b = replay.sample_mixed(buf, offline, jax.random.PRNGKey(seed), batch_size, ratio)
        r = np.asarray(b.reward)
        assert r.shape == (batch_size,)
        is_off = r >= 1000
        assert int(is_off.sum()) == n_off
        assert set(r[~is_off].tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}  # online rows: filled part only
        np.testing.assert_array_equal(np.asarray(b.episode)[~is_off], -1)
        assert (np.asarray(b.episode)[is_off] >= 0).all()


def test_top_n_transitions_picks_highest_return_episodes():
    # 4 episodes of lengths 2, 3, 1, 4 with returns 5, -1, 10, 3.
    episode = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 3])
    ret = np.array([5, 5, -1, -1, -1, 10, 3, 3, 3, 3], np.float32)
    data = rows(10, start=0, episode=episode, traj_return=ret)
    top2 = replay.top_n_transitions(data, 2)
    np.testing.assert_array_equal(top2.episode, [0, 0, 2])  # episodes 2 (10) and 0 (5), dataset order
    np.testing.assert_array_equal(top2.reward, [0, 1, 5])
    top3 = replay.top_n_transitions(data, 3)
    np.testing.assert_array_equal(top3.episode, [0, 0, 2, 3, 3, 3, 3])
    assert replay.top_n_transitions(data, 0).reward.shape == (0,)
    np.testing.assert_array_equal(replay.top_n_transitions(data, 99).reward, np.arange(10))


def test_init_replay_modes():
    episode = np.repeat(np.arange(4), [2, 3, 1, 4])
    ret = np.repeat(np.array([5, -1, 10, 3], np.float32), [2, 3, 1, 4])
    data = rows(10, start=1, episode=episode, traj_return=ret)
    cap = 20

    for mode in ("empty", "mix"):
        b = replay.init_replay(mode, data, OBS, ACT, cap)
        assert b.capacity == cap and int(b.size) == 0 and int(b.ptr) == 0

    full = replay.init_replay("full", data, OBS, ACT, cap)
    assert full.capacity == cap + 10 and int(full.size) == 10 and int(full.ptr) == 10
    np.testing.assert_array_equal(full.data.reward[:10], data.reward)
    np.testing.assert_array_equal(full.data.episode[:10], episode)

    top = replay.init_replay("top_n", data, OBS, ACT, cap, top_n=2)
    assert top.capacity == cap + 3 and int(top.size) == 3 and int(top.ptr) == 3
    np.testing.assert_array_equal(top.data.reward[:3], [1, 2, 6])  # episodes 0 and 2

    # top_n = 0 keeps the buffer empty.
    top0 = replay.init_replay("top_n", data, OBS, ACT, cap, top_n=0)
    assert int(top0.size) == 0 and top0.capacity == cap

    # The online data never overwrites the dataset rows before online_capacity steps.
    b = full
    insert = jax.jit(replay.insert)
    for i in range(cap):
        b = insert(b, row(rows(1, start=500 + i), 0))
    np.testing.assert_array_equal(b.data.reward[:10], data.reward)
    assert int(b.size) == cap + 10

    with pytest.raises(ValueError, match="replay init"):
        replay.init_replay("bogus", data, OBS, ACT, cap)


# ---------------------------------------------------------------------------------------------
# Muon / Adam routing (docs/algorithms.md, "Optimiser")
# ---------------------------------------------------------------------------------------------
def _leaf_names(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for path, leaf in flat:
        names = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
        out.append(("/".join(names), names[-1] if names else "", leaf))
    return out


@pytest.fixture(scope="module")
def sac_params_ln():
    learner = make_learner(
        "sac", OBS, ACT, dict(hidden_dims=(4, 4), critic_layer_norm=True, actor_layer_norm=True, optimizer="muon")
    )
    return learner, jax.jit(learner.init)(jax.random.PRNGKey(0))


def _hidden_layer(path):
    """dense_i with i >= 1: a hidden-to-hidden layer of an MLP (independently of smac_jax.optim)."""
    module = path.split("/")[-2] if "/" in path else ""
    return module.startswith("dense_") and int(module.split("_")[1]) >= 1


@pytest.mark.parametrize("scope", ["hidden", "all_kernels"])
def test_muon_partition_by_scope(sac_params_ln, scope):
    _, state = sac_params_ln
    params = state.params
    part = muon_partition(params, scope)
    leaves = _leaf_names(params)
    labels = dict((p, lab) for p, _, lab in _leaf_names(part))
    assert set(labels) == {p for p, _, _ in leaves}
    seen = {"kernel2d": 0, "kernel3d": 0, "bias2d": 0, "ln": 0, "scalar": 0, "input": 0, "output": 0}
    for path, name, leaf in leaves:
        if scope == "all_kernels":
            want = "muon" if name == "kernel" else "adam"
        else:
            want = "muon" if name == "kernel" and _hidden_layer(path) else "adam"
        assert labels[path] == want, (path, leaf.shape, labels[path])
        if name == "kernel":
            seen["kernel3d" if leaf.ndim == 3 else "kernel2d"] += 1
            if "dense_0" in path:
                seen["input"] += 1
            if path.split("/")[-2] in ("out", "mean", "log_std"):
                seen["output"] += 1
        elif name == "bias" and leaf.ndim == 2:
            seen["bias2d"] += 1
        if "ln_" in path:
            seen["ln"] += 1
        if leaf.ndim == 0:
            seen["scalar"] += 1
    # The tree really contains the tricky cases: 3-D ensemble kernels, 2-D ensemble biases,
    # LayerNorm scale/bias (2-D under the ensemble), the scalar log temperature, input layers
    # and output layers / heads (actor and ensemble critic).
    assert all(v > 0 for v in seen.values()), seen
    # Spot checks on named leaves, ensemble included.
    crit = part["critic"]["params"]["q"]["mlp"]
    actor = part["actor"]["params"]
    assert crit["dense_1"]["kernel"] == "muon" and crit["dense_1"]["bias"] == "adam"
    assert actor["trunk"]["dense_1"]["kernel"] == "muon"
    edge = "muon" if scope == "all_kernels" else "adam"
    assert crit["dense_0"]["kernel"] == edge and crit["out"]["kernel"] == edge
    assert actor["trunk"]["dense_0"]["kernel"] == edge
    assert actor["mean"]["kernel"] == edge and actor["log_std"]["kernel"] == edge


def test_muon_scope_is_validated():
    with pytest.raises(ValueError, match="muon_scope"):
        make_optimizer(ml_collections.ConfigDict(dict(optimizer="muon", lr=1e-3, muon_scope="input")))


def test_muon_optimizer_applies_the_partition(sac_params_ln):
    """One step of make_optimizer("muon") on every group: Adam leaves move by the same magnitude
    in every entry (a first Adam step is lr * c * sign(g)); Muon leaves do not (orthogonalised)."""
    learner, state = sac_params_ln
    lr = 1e-2
    cfg = ml_collections.ConfigDict(dict(optimizer="muon", lr=lr, muon_consistent_rms=0.2, muon_scope="hidden"))
    for group in ("actor", "critic", "log_temp"):
        params = state.params[group]
        leaves = jax.tree.leaves(params)
        keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
        grads = jax.tree.unflatten(
            jax.tree.structure(params), [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
        )
        opt = make_optimizer(cfg)
        updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
        part = dict((p, lab) for p, _, lab in _leaf_names(muon_partition(params)))
        for path, _, u in _leaf_names(updates):
            mag = np.abs(np.asarray(u)).ravel()
            uniform = np.allclose(mag, mag[0], rtol=1e-3)
            if part[path] == "adam":
                assert uniform, (group, path, mag)
            else:
                assert not uniform, (group, path, mag)


def test_muon_on_ensemble_kernel_is_per_member():
    """Muon on an (E, in, out) kernel = optax's Muon on each (in, out) member separately."""
    E, n_in, n_out, lr = 3, 5, 4, 0.05
    rng = np.random.default_rng(0)
    kernel = jnp.asarray(rng.normal(size=(E, n_in, n_out)), jnp.float32)
    cfg = ml_collections.ConfigDict(dict(optimizer="muon", lr=lr, muon_consistent_rms=0.2))
    cfg.muon_scope = "all_kernels"  # a bare kernel is no MLP hidden layer
    opt = make_optimizer(cfg)
    params = {"kernel": kernel}
    state = opt.init(params)
    ref_opts = [optax.contrib.muon(learning_rate=lr, consistent_rms=0.2) for _ in range(E)]
    ref_params = [{"kernel": kernel[e]} for e in range(E)]
    ref_states = [o.init(p) for o, p in zip(ref_opts, ref_params)]
    update = jax.jit(opt.update)
    ref_update = jax.jit(ref_opts[0].update)  # the E reference optimisers are identical
    for step in range(3):  # several steps, so the momentum is compared too
        g = jnp.asarray(rng.normal(size=(E, n_in, n_out)), jnp.float32)
        updates, state = update({"kernel": g}, state, params)
        params = optax.apply_updates(params, updates)
        for e in range(E):
            u_e, ref_states[e] = ref_update({"kernel": g[e]}, ref_states[e], ref_params[e])
            ref_params[e] = optax.apply_updates(ref_params[e], u_e)
            np.testing.assert_allclose(updates["kernel"][e], u_e["kernel"], rtol=1e-4, atol=1e-6)
    # ... and differs from treating the stacked kernel as one (E * in, out) matrix.
    whole = optax.contrib.muon(learning_rate=lr, consistent_rms=0.2)
    g = jnp.asarray(rng.normal(size=(E, n_in, n_out)), jnp.float32)
    flat_k = {"kernel": kernel.reshape(E * n_in, n_out)}
    u_whole, _ = jax.jit(whole.update)({"kernel": g.reshape(E * n_in, n_out)}, whole.init(flat_k), flat_k)
    u_ens, _ = update({"kernel": g}, opt.init({"kernel": kernel}), {"kernel": kernel})
    assert not np.allclose(u_ens["kernel"].reshape(E * n_in, n_out), u_whole["kernel"], rtol=1e-3)


def test_adam_optimizer_is_plain_adam():
    cfg = ml_collections.ConfigDict(dict(optimizer="adam", lr=1e-3))
    params = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    g = {"kernel": jnp.arange(6.0).reshape(3, 2) - 2.5, "bias": jnp.array([1.0, -2.0])}
    opt = make_optimizer(cfg)
    u, _ = opt.update(g, opt.init(params), params)
    ref = optax.adam(1e-3)
    u_ref, _ = ref.update(g, ref.init(params), params)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(ml_collections.ConfigDict(dict(optimizer="sgd", lr=1e-3)))
