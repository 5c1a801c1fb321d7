"""DeviceEvaluator (eval.env="jax"): every evaluation episode inside one compiled program,
checked against a NumPy replay of the same episodes on a toy JAX-native environment."""
import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.jax_envs import JaxEnv
from smac_jax.training.evaluation import DeviceEvaluator

LIMIT, GOAL = 6, 2.0


def _toy_env() -> JaxEnv:
    """A 1-d walk: start uniform in [-1, 1], position += action, reward = new position,
    terminated past GOAL, truncated after LIMIT steps (then reset in the same step)."""
    def reset(key):
        pos = jax.random.uniform(key, (), jnp.float32, -1.0, 1.0)
        return (pos, jnp.int32(0)), jnp.stack([pos, 0.0])

    def step(key, state, action):
        pos, t = state[0] + action[0], state[1] + 1
        terminated, truncated = pos > GOAL, t >= LIMIT
        fresh, first = reset(key)
        done = terminated | truncated
        new = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, (pos, t))
        obs = jnp.stack([pos, t.astype(jnp.float32)])
        return new, jnp.where(done, first, obs), obs, pos, terminated, truncated

    return JaxEnv("Toy-v0", 2, 1, LIMIT, reset, step)


def _reference(env, speeds, evaluator, round_index, gamma):
    """The same episodes replayed one by one in float64 NumPy from the documented reset keys."""
    s, n = evaluator.n_seeds, evaluator.n_episodes
    ret, disc, length, first = np.zeros((s, n)), np.zeros((s, n)), np.zeros((s, n), int), np.zeros((s, n, 2))
    base = jax.random.fold_in(jax.random.PRNGKey(0), round_index)
    for i in range(s):
        for e in range(n):
            key = jax.random.fold_in(base, (evaluator.base_seed + int(evaluator.seed_index[i])) * n + e)
            _, obs = env.reset(key)
            first[i, e] = obs
            pos = float(obs[0])
            for t in range(10_000):
                pos += speeds[i] + 0.1 * pos  # the policy below, on the observed position
                ret[i, e] += pos
                disc[i, e] += gamma**t * pos
                length[i, e] += 1
                if pos > GOAL or t + 1 >= LIMIT:
                    break
    return ret, disc, length, first


def test_episodes_equal_a_numpy_replay():
    env = _toy_env()
    speeds = np.array([0.05, 0.3, 0.9], np.float32)  # slow lanes truncate, fast ones terminate early
    act_fn = jax.jit(lambda st, obs: (st[:, None] + 0.1 * obs[..., 0])[..., None])
    ev = DeviceEvaluator(env, 3, 4, base_seed=7)
    eps = ev(act_fn, jnp.asarray(speeds), round_index=3, discount=0.9)
    ret, disc, length, first = _reference(env, speeds, ev, 3, 0.9)
    np.testing.assert_array_equal(eps.lengths, length)
    assert (length < LIMIT).any() and (length == LIMIT).any()
    np.testing.assert_allclose(eps.returns, ret, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eps.discounted, disc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eps.first_obs, first, rtol=1e-6)
    assert np.isnan(eps.success).all() and eps.returns.shape == (3, 4)
    # another round draws other start states; the same round the same ones
    assert not np.allclose(ev(act_fn, jnp.asarray(speeds), 4, 0.9).first_obs, eps.first_obs)
    np.testing.assert_array_equal(ev(act_fn, jnp.asarray(speeds), 3, 0.9).returns, eps.returns)


def test_lanes_with_the_same_seed_meet_the_same_episodes():
    """A sweep's lanes (settings x seeds): lanes of one seed number start from the same states."""
    env = _toy_env()
    act_fn = jax.jit(lambda st, obs: (st[:, None] + 0.0 * obs[..., 0])[..., None])
    ev = DeviceEvaluator(env, 4, 3, base_seed=0, seed_index=[0, 1, 0, 1])
    eps = ev(act_fn, jnp.asarray([0.1, 0.1, 0.5, 0.5]), 0)
    np.testing.assert_array_equal(eps.first_obs[0], eps.first_obs[2])
    np.testing.assert_array_equal(eps.first_obs[1], eps.first_obs[3])
    assert not np.allclose(eps.first_obs[0], eps.first_obs[1])


def test_landscape_points_on_the_device_equal_a_step_by_step_replay():
    """analysis.landscape.evaluate_stacked_on_device: every point meets the same episodes (reset
    keys fold_in(PRNGKey(seed), e)); returns and lengths equal a replay that acts with
    learner.act one observation at a time and steps the environment eagerly."""
    from smac_jax.analysis import landscape as ls
    from smac_jax.learners import make_learner

    env = _toy_env()
    learner = make_learner("sac", 2, 1, {"hidden_dims": (8, 8)})
    actors = [learner.init(jax.random.PRNGKey(k)).params["actor"] for k in (0, 1)]
    stacked = ls.stack([actors[0], actors[1], actors[0]])
    returns, lengths = ls.evaluate_stacked_on_device(learner, stacked, env, episodes=3, seed=5, return_lengths=True)
    assert returns.shape == lengths.shape == (3, 3)
    np.testing.assert_array_equal(returns[0], returns[2])  # same parameters, same episodes
    states = ls.actor_state(stacked)
    for p in range(3):
        st = jax.tree.map(lambda x: x[p], states)
        for e in range(3):
            state, obs = env.reset(jax.random.fold_in(jax.random.PRNGKey(5), e))
            ret, n = 0.0, 0
            while True:
                a = learner.act(st, obs[None], jax.random.PRNGKey(0), True)[0]
                state, _, obs, r, term, trunc = env.step(jax.random.PRNGKey(0), state, a)
                ret, n = ret + float(r), n + 1
                if term or trunc:
                    break
            assert lengths[p, e] == n
            np.testing.assert_allclose(returns[p, e], ret, rtol=1e-5, atol=1e-5)


def test_a_seed_meets_the_same_evaluation_episodes_alone_and_as_a_lane():
    """Evaluation start states are a function of the seed number (config.seed + lane), so seed 2 run
    alone (config.seed=2, one lane) is evaluated on the episodes it meets as lane 2 of a 3-seed run:
    before, a seed alone met other episodes (overlapping seed 0's at eval.episodes > 1)."""
    from smac_jax import envs
    from smac_jax.training.evaluation import DeviceEvaluator, Evaluator

    alone, lanes = DeviceEvaluator(None, 1, 4, base_seed=2), DeviceEvaluator(None, 3, 4, base_seed=0)
    for r in (0, 7):
        np.testing.assert_array_equal(np.asarray(alone.keys(r))[0], np.asarray(lanes.keys(r))[2])
    assert np.unique(np.asarray(lanes.keys(0)).reshape(-1, 2), axis=0).shape[0] == 12
    env_fn = lambda: envs.make_env("Pendulum-v1", max_episode_steps=5)  # noqa: E731
    act = lambda states, obs: np.zeros((*obs.shape[:-1], 1), np.float32)  # noqa: E731
    host_alone, host_lanes = Evaluator(env_fn, 1, 4, base_seed=2), Evaluator(env_fn, 3, 4, base_seed=0)
    np.testing.assert_array_equal(host_alone(act, None, 3).first_obs[0], host_lanes(act, None, 3).first_obs[2])
    assert np.unique(host_lanes(act, None, 3).first_obs.reshape(12, -1), axis=0).shape[0] == 12
    host_alone.close(), host_lanes.close()
