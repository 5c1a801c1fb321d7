"""The fused online loop (environments stepped from inside the program) against the per-step loop."""
from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tree_allclose

from smac_jax.data import replay
from smac_jax.learners import make_learner
from smac_jax.training.online import (
    OnlineCollector, host_call, lean_path_works, make_act_step, make_online_loop, make_online_step,
)
from smac_jax.training.steps import unalias

SEEDS = [0, 1]
OBS, ACT = 3, 1  # Pendulum-v1
LEARNING_STARTS, STEPS = 6, 20


def setup():
    learner = make_learner("sac", OBS, ACT, {"hidden_dims": (16, 16), "batch_size": 8})
    keys = jax.random.split(jax.random.PRNGKey(3), len(SEEDS))
    states = unalias(jax.vmap(learner.init)(keys))
    buffers = unalias(jax.tree.map(lambda x: np.stack([x] * len(SEEDS)), replay.empty_buffer(OBS, ACT, 64)))
    collector = OnlineCollector(lambda: gym.make("Pendulum-v1"), SEEDS, reward_scale=0.1)
    actions = make_act_step(learner)(states, collector.obs, keys, 0)
    return learner, keys, states, buffers, collector, actions


@pytest.mark.parametrize("lean_callback", [True, False])
def test_fused_loop_matches_per_step_loop(lean_callback):
    """Chunks of different lengths, across learning_starts, give the per-step loop's states, buffers,
    actions and episode returns, through either host-call path."""
    learner, keys, states, buffers, collector, actions = setup()
    fns = {t: make_online_step(learner, 1, None, train=t) for t in (False, True)}
    for step in range(1, STEPS + 1):
        t, nxt = collector.step(np.asarray(actions))
        states, buffers, actions, metrics = fns[step > LEARNING_STARTS](states, buffers, t, nxt, None, keys, step)
    ref = (states, buffers, actions, metrics, collector.episode_returns.copy())

    learner, keys, states, buffers, collector, actions = setup()
    loops = {t: make_online_loop(learner, collector.step_packed, len(SEEDS), 1, None, t, lean_callback)
             for t in (False, True)}
    step = 0
    for n in (4, 2, 5, 1, 8):  # 4 + 2 = LEARNING_STARTS
        states, buffers, actions, metrics = loops[step >= LEARNING_STARTS](states, buffers, actions, None, keys, step, n)
        step += n
    assert step == STEPS
    # Same numbers up to float32 rounding: XLA fuses the loop program differently from the step program.
    assert tree_allclose(ref[:4], (states, buffers, actions, metrics), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref[4], collector.episode_returns, rtol=1e-4)
    np.testing.assert_array_equal(ref[1].ptr, buffers.ptr)
    assert int(buffers.size[0]) == STEPS and set(metrics) == set(ref[3]) and metrics


@pytest.mark.parametrize("learner_name", ["sac", "td3"])
def test_critic_warmup_holds_the_policy_side_only(learner_name):
    """hold_policy_until: updates up to that environment step change the critic (and its target)
    but not the actor, target actor, temperature or their optimiser states; after it, the policy
    side trains again, and the run differs from one without the warm-up."""
    learner = make_learner(learner_name, OBS, ACT, {"hidden_dims": (16, 16), "batch_size": 8})
    policy = [g for g in learner.policy_groups if g in learner.init(jax.random.PRNGKey(0)).params]
    assert "actor" in policy and ("log_temp" in policy or "target_actor" in policy)

    def run(hold_until):
        _, keys, _, buffers, collector, _ = setup()
        states = unalias(jax.vmap(learner.init)(keys))
        actions = make_act_step(learner)(states, collector.obs, keys, 0)
        start = jax.tree.map(np.array, states)
        loops = {t: make_online_loop(learner, collector.step_packed, len(SEEDS), 1, None, t,
                                     hold_policy_until=hold_until) for t in (False, True)}
        states, buffers, actions, _ = loops[False](states, buffers, actions, None, keys, 0, LEARNING_STARTS)
        mid = None
        for step in range(LEARNING_STARTS, STEPS):
            states, buffers, actions, _ = loops[True](states, buffers, actions, None, keys, step, 1)
            if step + 1 == LEARNING_STARTS + 6:
                mid = jax.tree.map(np.array, states)
        return start, mid, jax.tree.map(np.array, states)

    start, mid, held_end = run(LEARNING_STARTS + 6)
    for g in policy:
        assert tree_allclose(start.params[g], mid.params[g], rtol=0, atol=0), g
        if g in start.opt_state:
            assert tree_allclose(start.opt_state[g], mid.opt_state[g], rtol=0, atol=0), g
    assert not tree_allclose(start.params["critic"], mid.params["critic"], rtol=0, atol=0)
    assert not tree_allclose(start.params["target_critic"], mid.params["target_critic"], rtol=0, atol=0)
    assert not tree_allclose(mid.params["actor"], held_end.params["actor"], rtol=0, atol=0)  # trains after
    _, _, free_end = run(0)
    assert not tree_allclose(free_end.params["actor"], held_end.params["actor"], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("lean", [True, False])
def test_host_call_runs_once_per_iteration_in_order(lean):
    """Either path of the host call (the lean one is taken on the pinned JAX) sees each
    iteration's operands in program order, exactly once, and its results flow back into the program."""
    if lean and not lean_path_works():
        with pytest.warns(UserWarning, match="lean host call is not available"):
            host_call(lambda v: (v,), (jax.ShapeDtypeStruct((1,), jnp.float32),), jnp.zeros(1), lean=True)
        pytest.skip("this JAX lacks the internals of the opt-in lean host call; io_callback is used (warned)")
    seen = []

    def fn(x, i):
        seen.append((np.array(x), int(i)))
        return (np.asarray(x * 2.0, np.float32),)

    shapes = (jax.ShapeDtypeStruct((2, 3), jnp.float32),)

    @jax.jit
    def prog(x, n):
        def body(i, x):
            (y,) = host_call(fn, shapes, x, i, lean=lean)
            return y + 1.0
        return jax.lax.fori_loop(0, n, body, x)

    x0 = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    assert ("smac_host_call" if lean else "io_callback") in str(jax.make_jaxpr(prog)(x0, 4))
    out = np.asarray(prog(x0, 4))
    ref = np.asarray(x0)
    for i in range(4):
        np.testing.assert_array_equal(seen[i][0], ref)
        assert seen[i][1] == i
        ref = ref * 2.0 + 1.0
    assert len(seen) == 4
    np.testing.assert_array_equal(out, ref)


def test_host_call_wrong_result_shape_is_an_error():
    shapes = (jax.ShapeDtypeStruct((3,), jnp.float32),)
    f = jax.jit(lambda x: host_call(lambda v: (np.zeros(4, np.float32),), shapes, x)[0])
    with pytest.raises(Exception, match="shape"):
        jax.block_until_ready(f(jnp.zeros(3)))


def test_fused_loop_reraises_environment_errors():
    learner, keys, states, buffers, collector, actions = setup()
    calls = []

    def failing_env_step(a):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the simulator exploded at call 3")
        return collector.step_packed(a)

    loop = make_online_loop(learner, failing_env_step, len(SEEDS), 1, None, False)
    with pytest.raises(RuntimeError, match="exploded at call 3"):
        loop(states, buffers, actions, None, keys, 0, 5)
    assert len(calls) == 3  # the environment is not stepped again once it failed


def test_loops_with_the_same_program_share_it_and_step_their_own_environments():
    """A loop that lowers to the same program as an earlier one reuses its executable; two such
    loops called in turn step each its own environments and end exactly where each ends alone.
    Another program (another learner config) is compiled anew."""

    def build(seed_offset):
        learner, keys, states, buffers, _, _ = setup()
        collector = OnlineCollector(lambda: gym.make("Pendulum-v1"), [s + seed_offset for s in SEEDS], reward_scale=0.1)
        actions = make_act_step(learner)(states, collector.obs, keys, 0)
        loop = make_online_loop(learner, collector.step_packed, len(SEEDS), 1, None, True)
        return dict(loop=loop, carry=[states, buffers, actions], keys=keys, collector=collector)

    def advance(run, chunk):
        out = run["loop"](*run["carry"], None, run["keys"], 3 * chunk, 3)
        run["carry"] = list(out[:3])

    alone = [build(0), build(10)]
    for run in alone:
        for chunk in range(2):
            advance(run, chunk)
    turns = [build(0), build(10)]
    for chunk in range(2):
        for run in turns:
            advance(run, chunk)
    assert alone[1]["loop"].reused and all(run["loop"].reused for run in turns)
    for a, b in zip(alone, turns):
        assert tree_allclose(a["carry"], b["carry"])  # exactly equal
        np.testing.assert_array_equal(a["collector"].obs, b["collector"].obs)
        assert int(b["carry"][1].size[0]) == 6
    assert not np.allclose(turns[0]["collector"].obs, turns[1]["collector"].obs)  # their own environments

    other = make_learner("sac", OBS, ACT, {"hidden_dims": (8, 8), "batch_size": 8})  # no other test's
    _, keys, _, buffers, collector, _ = setup()
    states = unalias(jax.vmap(other.init)(keys))
    loop = make_online_loop(other, collector.step_packed, len(SEEDS), 1, None, False)  # no updates: compiles fast
    loop(states, buffers, make_act_step(other)(states, collector.obs, keys, 0), None, keys, 0, 1)
    assert not loop.reused


def test_a_loop_whose_arguments_differ_in_structure_is_not_given_another_loops_program():
    """Before its updates start, a loop that mixes dataset rows into its minibatches (``mix``) does
    not read the dataset, so it lowers to the same program text as a loop without one; its
    arguments still differ (the dataset against None), so it must not be handed that executable."""
    learner, keys, states, buffers, collector, actions = setup()
    plain = make_online_loop(learner, collector.step_packed, len(SEEDS), 1, None, False)
    states, buffers, actions, _ = plain(states, buffers, actions, None, keys, 0, 2)
    offline = replay.empty_buffer(OBS, ACT, 16).data  # the dataset every seed shares
    mixed = make_online_loop(learner, collector.step_packed, len(SEEDS), 1, 0.5, False)
    out = mixed(states, buffers, actions, offline, keys, 2, 2)
    assert int(out[1].size[0]) == 4


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v5"])  # time-limit ends; terminations
def test_collector_matches_gymnasium_sync_vector_env(env_id):
    """The collector steps like ``SyncVectorEnv`` with SAME_STEP autoreset: same observations, rewards,
    flags, and the true final observation as ``next_obs`` where an episode ended."""
    from smac_jax.envs import make_env

    seeds, start, steps = [0, 5], 3, 260
    env_fn = lambda: make_env(env_id)
    collector = OnlineCollector(env_fn, seeds, start_step=start, reward_scale=0.5, reward_bias=1.0)
    ref = gym.vector.SyncVectorEnv([env_fn] * len(seeds), autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = ref.reset(seed=[s * 7919 + start for s in seeds])
    np.testing.assert_array_equal(collector.obs, obs.astype(np.float32))
    rng = np.random.default_rng(0)
    ends = {"term": 0, "trunc": 0}
    for _ in range(steps):
        a = rng.uniform(-1, 1, (len(seeds), collector.envs[0].action_space.shape[0])).astype(np.float32)
        t, nxt = collector.step(a)
        ref_next, r, term, trunc, info = ref.step(a)
        real = ref_next.copy()
        for i in np.nonzero(term | trunc)[0]:
            real[i] = info["final_obs"][i]
        np.testing.assert_array_equal(t.obs, obs.astype(np.float32))
        np.testing.assert_array_equal(nxt, ref_next.astype(np.float32))
        np.testing.assert_array_equal(t.next_obs, real.astype(np.float32))
        np.testing.assert_array_equal(t.reward, (r * 0.5 + 1.0).astype(np.float32))
        np.testing.assert_array_equal(t.terminated, term.astype(np.float32))
        np.testing.assert_array_equal(t.truncated, trunc.astype(np.float32))
        ends["term"] += int(term.sum())
        ends["trunc"] += int(trunc.sum())
        obs = ref_next
    ref.close()
    collector.close()
    assert ends["term" if env_id == "Hopper-v5" else "trunc"] > 0  # the reset path was exercised
