"""Online interaction, all of it: the environments, the device programs that act, insert and
update, and the host call that joins the two inside one program.

* :class:`OnlineCollector`: one Gymnasium environment per seed, stepped together on the host.
* :func:`make_online_loop`: many environment steps in one dispatch (the loop the pipeline and the
  dataset factory run); :func:`make_online_step` is one step per dispatch with the same
  semantics, and :func:`make_act_step` acts without inserting or updating.
* :class:`DeviceCollector` and :func:`make_device_online_loop`: the same with JAX-native
  environments (:mod:`smac_jax.jax_envs`), stepped inside the program: no host call at all.
* :func:`host_call`: an ordered host call from inside a jitted program, NumPy in and NumPy out.
  By default it is the public ``jax.experimental.io_callback(..., ordered=True)``, which wraps
  every call in ``jax.device_put`` of its arguments (a JAX array is built for every operand,
  inside the running program) and converts the results back: a measurable share of a small SAC
  step on CPU (``experiments/benchmark.py``, the ``fused_io_callback`` variant; numbers in
  ``docs/README.md``, "Online loop"). ``lean=True`` (the pipeline's ``online.lean_host_call``)
  opts into a leaner path with the same semantics (calls in program order, exactly once each)
  that hands the callback the operands as the NumPy arrays the runtime already holds. It is built
  on JAX's internal callback lowering (``jax._src.callback.emit_python_callback``); where a JAX
  version lacks it, the call falls back to ``io_callback`` with a warning: :data:`LEAN` is False
  where the internals do not import, and :func:`lean_path_works` checks once that they compile
  and run. On the lean path the operands may be views of the program's buffers: copy what must
  outlive the call. Neither path can be ``vmap``ped or differentiated.

Keys are per seed and derived from the global step (``jax.random.fold_in``), so a resumed run
draws exactly what an uninterrupted one would have.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import warnings
import weakref
from collections.abc import Callable, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from smac_jax.data import replay
from smac_jax.training.steps import _mean_metrics, checked_metrics, seed_vmap
from smac_jax.types import Transitions

__all__ = ["LEAN", "DeviceCollector", "OnlineCollector", "clear_compiled_loops", "host_call", "lean_path_works",
           "make_act_step", "make_device_online_loop", "make_online_loop", "make_online_step"]


# ------------------------------------------------------------------------------------------------
# Host side: the environments
# ------------------------------------------------------------------------------------------------
class OnlineCollector:
    """Steps ``n`` environments (one per seed) and builds the transitions to insert.

    Each environment is reset with seed ``seeds[i] * 7919 + start_step``, and again (unseeded,
    continuing its own RNG) as soon as an episode ends, within the same step: the returned
    observation to act on is then the new episode's first, while the transition keeps the true
    final observation as ``next_obs``. This is Gymnasium's ``SyncVectorEnv`` with
    ``AutoresetMode.SAME_STEP``, step for step (``tests/test_online_loop.py`` checks it against
    that class); the environments are stepped in a plain loop because the vector env's info
    bookkeeping is a measurable share of a Hopper step in the fused online loop (``docs/README.md``).
    Rewards are scaled (``reward * reward_scale + reward_bias``, as the offline data), and
    bootstrapping is cut by ``terminated`` only.

    Resuming: :meth:`state_dict` records, per environment, how its current episode began (the
    reset seed, or the environment's RNG state before an unseeded reset) and the actions taken
    since; :meth:`load_state_dict` rebuilds the environments by replaying that episode, which
    puts a deterministic environment (Gymnasium's MuJoCo and classic-control tasks) back in
    exactly the state it had, RNG included. Replaying costs at most one episode of steps; it
    keeps checkpoints small and works for any environment whose dynamics depend only on its RNG
    and the actions, where pickling simulator objects would not."""

    def __init__(self, env_fn: Callable[[], gym.Env], seeds: list[int], start_step: int = 0,
                 reward_scale: float = 1.0, reward_bias: float = 0.0):
        self.n = len(seeds)
        self.envs = [env_fn() for _ in seeds]
        # How each environment's current episode began, and the actions taken since (for resuming).
        self._starts: list[dict] = [{"seed": s * 7919 + start_step} for s in seeds]
        self._actions: list[list[list[float]]] = [[] for _ in seeds]
        first = [env.reset(seed=s * 7919 + start_step)[0] for env, s in zip(self.envs, seeds)]
        self.obs = np.stack(first).astype(np.float32)
        self.reward_scale, self.reward_bias = reward_scale, reward_bias
        self._zeros = np.zeros(self.n, np.float32)
        self._no_mc = np.full(self.n, replay.NO_MC_RETURN, np.float32)
        self._episode = np.full(self.n, -1, np.int32)
        self.episode_returns = np.zeros(self.n)
        self.finished_returns: list[list[float]] = [[] for _ in seeds]
        # Tasks that report info["success"]: whether the current episode has succeeded, and per
        # environment the training episodes finished and how many of them succeeded (CORL's regret).
        self.reports_success = False
        self.episode_success = np.zeros(self.n, bool)
        self.train_episodes = np.zeros(self.n, np.int64)
        self.train_successes = np.zeros(self.n, np.int64)

    def step(self, actions: np.ndarray) -> tuple[Transitions, np.ndarray]:
        """Apply ``actions`` (n, act_dim); returns (transitions to insert, observations to act on)."""
        n = self.n
        final_obs, next_obs = np.empty_like(self.obs), np.empty_like(self.obs)
        rew = np.empty(n)
        term, trunc = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for i, env in enumerate(self.envs):
            obs, rew[i], terminated, truncated, info = env.step(actions[i])
            self._actions[i].append(np.asarray(actions[i], np.float32).tolist())
            final_obs[i] = obs
            self.episode_returns[i] += rew[i]
            if "success" in info:
                self.reports_success = True
                self.episode_success[i] |= bool(info["success"])
            if terminated or truncated:
                term[i], trunc[i] = float(terminated), float(truncated)
                self.finished_returns[i].append(float(self.episode_returns[i]))
                self.episode_returns[i] = 0.0
                self.train_episodes[i] += 1
                self.train_successes[i] += int(self.episode_success[i])
                self.episode_success[i] = False
                self._starts[i] = {"rng": _rng_state(env)}
                self._actions[i] = []
                obs, _ = env.reset()
            next_obs[i] = obs
        t = Transitions(
            obs=self.obs, action=actions, reward=(rew * self.reward_scale + self.reward_bias).astype(np.float32),
            next_obs=final_obs, terminated=term, truncated=trunc,
            episode=self._episode, rtg=self._zeros, mc_return=self._no_mc, traj_return=self._zeros,
        )
        self.obs = next_obs
        return t, next_obs

    def step_packed(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` with the transitions packed into replay rows (``replay.pack``): the host
        side of :func:`make_online_loop`."""
        t, next_obs = self.step(actions)
        return replay.pack(t, np), next_obs

    def state_dict(self) -> dict:
        """JSON-serialisable state from which :meth:`load_state_dict` rebuilds the environments."""
        return {"starts": self._starts, "actions": self._actions,
                "episode_returns": self.episode_returns.tolist(), "reports_success": self.reports_success,
                "episode_success": self.episode_success.tolist(), "train_episodes": self.train_episodes.tolist(),
                "train_successes": self.train_successes.tolist()}

    def success_counts(self) -> dict[str, np.ndarray]:
        """Per environment, the training episodes finished so far and how many succeeded, for
        tasks that report ``info["success"]`` (else empty)."""
        if not self.reports_success:
            return {}
        return {"train_episodes": self.train_episodes.copy(), "train_successes": self.train_successes.copy()}

    def load_state_dict(self, state: dict) -> None:
        """Put every environment back where :meth:`state_dict` was taken, by replaying its episode."""
        if len(state["starts"]) != self.n:
            raise ValueError(f"collector state holds {len(state['starts'])} environments, this run has {self.n}")
        obs = np.empty_like(self.obs)
        for i, env in enumerate(self.envs):
            start, acts = state["starts"][i], state["actions"][i]
            if "seed" in start:
                o, _ = env.reset(seed=start["seed"])
            else:
                _set_rng_state(env, start["rng"])
                o, _ = env.reset()
            for a in acts:
                o, _, terminated, truncated, _ = env.step(np.asarray(a, np.float32))
                if terminated or truncated:
                    raise ValueError("replaying the checkpointed episode ended it early: the environment "
                                     "is not deterministic given its RNG state and actions")
            obs[i] = o
        self._starts = [dict(s) for s in state["starts"]]
        self._actions = [list(a) for a in state["actions"]]
        self.episode_returns = np.asarray(state["episode_returns"], np.float64)
        self.reports_success = bool(state.get("reports_success", False))  # absent in older checkpoints
        self.episode_success = np.asarray(state.get("episode_success", [False] * self.n), bool)
        self.train_episodes = np.asarray(state.get("train_episodes", [0] * self.n), np.int64)
        self.train_successes = np.asarray(state.get("train_successes", [0] * self.n), np.int64)
        self.obs = obs

    def make_loop(self, learner, utd: int, mixing_ratio: float | None, train: bool, lean_callback: bool = False,
                  hold_policy_until: int = 0):
        """This collector's online loop: :func:`make_online_loop` stepping these environments."""
        return make_online_loop(learner, self.step_packed, self.n, utd, mixing_ratio, train, lean_callback,
                                hold_policy_until)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class DeviceCollector:
    """The device counterpart of :class:`OnlineCollector`: one JAX-native environment per seed
    (:class:`smac_jax.jax_envs.JaxEnv`), its states kept as arrays with a leading seed axis and
    stepped inside the online program (:func:`make_device_online_loop`), never on the host.

    Seed ``i``'s environment draws its resets from ``fold_in(fold_in(online_keys[i], ENV_STREAM),
    s)`` at environment step ``s`` (the first reset: ``s = 0``), so a resumed run resets exactly as
    an uninterrupted one; the start states therefore differ from the Gymnasium collector's (same
    distribution, other draws). Rewards are scaled like the offline data's; bootstrapping is cut
    by ``terminated`` only. :meth:`state_dict` holds the environments' states themselves (a few
    numbers per seed), so resuming replays nothing."""

    ENV_STREAM = 0x656E76  # "env": the environments' key stream, folded into each seed's online key

    def __init__(self, env, online_keys: jax.Array, reward_scale: float = 1.0, reward_bias: float = 0.0):
        self.env, self.n = env, int(online_keys.shape[0])
        self.reward_scale, self.reward_bias = float(reward_scale), float(reward_bias)
        self.env_state, self.obs = jax.jit(jax.vmap(lambda k: env.reset(self.env_key(k, 0))))(online_keys)

    @classmethod
    def env_key(cls, seed_key: jax.Array, step) -> jax.Array:
        return jax.random.fold_in(jax.random.fold_in(seed_key, cls.ENV_STREAM), step)

    def make_loop(self, learner, utd: int, mixing_ratio: float | None, train: bool, lean_callback: bool = False,
                  hold_policy_until: int = 0):
        """This collector's online loop (``lean_callback`` does not apply: there is no host call)."""
        return make_device_online_loop(learner, self, utd, mixing_ratio, train, hold_policy_until)

    def state_dict(self) -> dict:
        leaves = jax.tree.leaves(self.env_state)
        return {"env_state": [np.asarray(x).tolist() for x in leaves], "obs": np.asarray(self.obs).tolist()}

    def load_state_dict(self, state: dict) -> None:
        leaves, tree = jax.tree.flatten(self.env_state)
        if len(state.get("env_state", ())) != len(leaves) or np.shape(state.get("obs")) != np.shape(self.obs):
            raise ValueError(f"collector state does not describe {self.n} JAX-native {self.env.env_id} environments")
        self.env_state = jax.tree.unflatten(tree, [jnp.asarray(np.asarray(v, x.dtype).reshape(x.shape))
                                                   for v, x in zip(state["env_state"], leaves)])
        self.obs = jnp.asarray(np.asarray(state["obs"], np.float32))

    def success_counts(self) -> dict:
        return {}  # the JAX-native environments report no success

    def close(self) -> None:
        pass


def _rng_state(env: gym.Env) -> dict:
    return _jsonable(env.unwrapped.np_random.bit_generator.state)


def _set_rng_state(env: gym.Env, state: dict) -> None:
    gen = np.random.Generator(getattr(np.random, state["bit_generator"])())
    gen.bit_generator.state = state
    env.unwrapped.np_random = gen


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.integer):
        return int(x)
    return x


# ------------------------------------------------------------------------------------------------
# Device side: act, insert, update
# ------------------------------------------------------------------------------------------------
def hold_policy(learner, new, old, hold):
    """``new`` with the policy side (the groups of ``learner.policy_groups`` it has: actor, target
    actor, temperature) and their optimiser states put back to ``old`` where ``hold`` (a traced
    bool): the critic-only update of the online critic warm-up."""
    groups = [g for g in learner.policy_groups if g in new.params]
    pick = lambda n, o: jax.tree.map(lambda a, b: jnp.where(hold, b, a), n, o)  # noqa: E731
    params = {**new.params, **{g: pick(new.params[g], old.params[g]) for g in groups}}
    opt = {**new.opt_state, **{g: pick(new.opt_state[g], old.opt_state[g]) for g in groups if g in new.opt_state}}
    return new.replace(params=params, opt_state=opt)


def _online_per_seed(learner, utd: int, mixing_ratio: float | None, train: bool, hold_policy_until: int = 0):
    """Per seed, one environment step's device work: insert the transition, ``utd`` updates (if
    ``train``) on minibatches drawn after the insert, then the next exploratory action. At
    environment steps ``<= hold_policy_until`` the updates train the critic side only
    (:func:`hold_policy`; 0: never).

    ``(state, buffer, row, obs, offline, seed_key, step) -> (state, buffer, action, metrics)``
    """
    bs = learner.config.batch_size

    def per_seed(state, buffer, row, obs, offline, seed_key, step):
        buffer = replay.insert(buffer, row)
        k = jax.random.fold_in(seed_key, step)
        k_act, k_up = jax.random.split(k)
        metrics = {}
        if train:
            def body(st, kk):
                k_b, k_u = jax.random.split(kk)
                if mixing_ratio is None:
                    batch = replay.sample(buffer, k_b, bs)
                else:
                    batch = replay.sample_mixed(buffer, offline, k_b, bs, mixing_ratio)
                new, m = learner.update(st, batch, k_u)
                m = checked_metrics(learner, m)
                if hold_policy_until > 0:
                    new = hold_policy(learner, new, st, step <= hold_policy_until)
                return new, m

            state, ms = jax.lax.scan(body, state, jax.random.split(k_up, utd))
            metrics = _mean_metrics(ms)
        action = learner.act(state, obs, k_act, False)
        return state, buffer, action, metrics

    return seed_vmap(per_seed, (0, 0, 0, 0, None, 0, None))


def make_online_step(learner, utd: int, mixing_ratio: float | None, train: bool, hold_policy_until: int = 0):
    """One environment step's device work for every seed, in one dispatch (the environment is
    stepped by the caller): insert the last transition, ``utd`` updates (if ``train``), and the
    next exploratory action.

    ``(states, buffers, transition, obs, offline, seed_keys, step) -> (states, buffers, actions, metrics)``

    ``transition`` is :class:`Transitions` with a leading seed axis, or its rows already packed
    (``replay.pack``); host (NumPy) transitions are packed on the host, so they travel as one
    array. States and buffers are donated: the insert writes one row in place. For many steps in
    one dispatch, with the environment stepped from inside the program, see
    :func:`make_online_loop`. ``hold_policy_until``: updates at environment steps up to this one
    train the critic side only, the policy and its temperature stay as handed over (the online
    critic warm-up, docs/algorithms.md; 0: off).
    """
    program = jax.jit(_online_per_seed(learner, utd, mixing_ratio, train, hold_policy_until), donate_argnums=(0, 1))

    def step(states, buffers, transition, obs, offline, seed_keys, step_):
        if isinstance(transition, Transitions) and isinstance(transition.reward, np.ndarray):
            transition = replay.pack(transition, np)
        if mixing_ratio is None:
            offline = None  # not read: keep its leaves out of the dispatch
        return program(states, buffers, transition, obs, offline, seed_keys, step_)

    step.program = program  # the jitted program, for ahead-of-time compilation
    return step


# A program with a host call cannot enter JAX's persistent compilation cache, so left to JAX every
# online loop would be compiled afresh in every run of a process (a sweep's fine-tunes, a notebook's runs).
# The loop's host call goes through one module-level function that finds the calling loop's
# environments by a slot number passed as an operand; two loops whose lowered programs are the
# same text (the same computation: learner, config, shapes, constants) then share one compiled
# executable, each stepping its own environments.
_LOOP_SLOTS: dict[int, tuple] = {}  # slot -> (env_step, failures, placeholder results)
_NEXT_SLOT = itertools.count()
_COMPILED_LOOPS: collections.OrderedDict = collections.OrderedDict()  # (lean, text digest) -> Compiled
_MAX_COMPILED_LOOPS = 16  # least recently used executables beyond this are dropped


def clear_compiled_loops() -> None:
    """Forget the online loops' compiled executables (the next loop built compiles its program;
    loops already built keep theirs)."""
    _COMPILED_LOOPS.clear()


def _loop_host_step(slot, actions):
    """The host side of every online loop: step the environments of loop ``slot``."""
    env_step, failure, placeholder = _LOOP_SLOTS[int(slot)]
    if not failure:  # once the environment failed in a chunk, the rest of it is skipped
        try:
            rows, obs = env_step(np.array(actions))  # a copy: the operand may view a program buffer
            return np.asarray(rows, np.float32), np.asarray(obs, np.float32)
        except BaseException as e:  # noqa: BLE001 - re-raised on the host after the dispatch
            failure.append(e)
    return placeholder


def _compiled_loop(program, args, lean: bool, sig):
    """``(executable, reused)``: ``program`` compiled for ``args``, or the executable compiled
    earlier in this process for the same lowered program text and the same argument structure,
    shapes and types ``sig`` (``reused`` True). The text alone is not enough: an argument the
    program does not read (a ``mix`` loop's dataset before its updates start) is left out of it,
    while the executable still takes exactly the arguments it was compiled for."""
    lowered = program.lower(*args)
    text = lowered.as_text()
    if "__elided__" in text:  # constants left out of the text: it no longer identifies the program
        return lowered.compile(), False
    key = (lean, sig, hashlib.sha256(text.encode()).hexdigest())
    compiled = _COMPILED_LOOPS.pop(key, None)
    reused = compiled is not None
    if not reused:
        compiled = lowered.compile()
    _COMPILED_LOOPS[key] = compiled
    while len(_COMPILED_LOOPS) > _MAX_COMPILED_LOOPS:
        _COMPILED_LOOPS.popitem(last=False)
    return compiled, reused


def make_online_loop(learner, env_step, n_seeds: int, utd: int, mixing_ratio: float | None, train: bool,
                     lean_callback: bool = False, hold_policy_until: int = 0):
    """Many environment steps in one dispatch: the environments are stepped from inside the
    program (an ordered host call), so a chunk of steps costs one dispatch instead of one per
    step, with exactly the per-step semantics of :func:`make_online_step`.

    ``env_step(actions) -> (rows, next_obs)`` is the host side: it applies ``actions``
    (``(n_seeds, act_dim)``) and returns the packed transitions (``(n_seeds, row_width)``, see
    ``replay.pack``) and the observations to act on, e.g.
    :meth:`OnlineCollector.step_packed`.

    ``(states, buffers, actions, offline, seed_keys, start, n) -> (states, buffers, actions, metrics)``
    runs environment steps ``s = start + 1 .. start + n`` (``n`` may change between calls
    without recompiling): for each, step the environments with ``actions``, then insert, update
    and act as :func:`make_online_step` does with step index ``s``. ``metrics`` are the last step's.
    An exception raised by ``env_step`` is re-raised by the returned function after the dispatch.
    States and buffers are donated.

    The program is compiled at the first call, unless a loop built earlier in this process lowered
    to the same program (same learner and config, shapes and flags): the two then share one
    compiled executable, each stepping its own environments (``loop.reused`` tells which).

    ``lean_callback``: step the environments through :func:`host_call`'s lean path (opt-in, the
    pipeline's ``online.lean_host_call``), or through ``jax.experimental.io_callback`` (default;
    slower on CPU: it builds JAX arrays of the operands inside every call, see ``experiments/benchmark.py``).

    ``hold_policy_until``: as in :func:`make_online_step` (the critic warm-up).
    """
    per_seed = _online_per_seed(learner, utd, mixing_ratio, train, hold_policy_until)
    obs_dim, act_dim = learner.obs_dim, learner.act_dim
    shapes = (jax.ShapeDtypeStruct((n_seeds, replay.row_width(obs_dim, act_dim)), jnp.float32),
              jax.ShapeDtypeStruct((n_seeds, obs_dim), jnp.float32))
    failure: list[BaseException] = []
    slot = next(_NEXT_SLOT)
    _LOOP_SLOTS[slot] = (env_step, failure, tuple(np.zeros(s.shape, np.float32) for s in shapes))

    def run(states, buffers, actions, offline, seed_keys, start, n, slot):
        def one_step(i, carry):
            states, buffers, actions, _ = carry
            rows, obs = host_call(_loop_host_step, shapes, slot, actions, lean=lean_callback)
            return per_seed(states, buffers, rows, obs, offline, seed_keys, start + i + 1)

        metrics0 = jax.eval_shape(lambda: per_seed(states, buffers, jnp.zeros(shapes[0].shape), jnp.zeros(
            shapes[1].shape), offline, seed_keys, start)[3])
        metrics0 = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics0)
        return jax.lax.fori_loop(0, n, one_step, (states, buffers, actions, metrics0))

    program = jax.jit(run, donate_argnums=(0, 1))
    executables: dict = {}  # argument structure and types -> compiled program

    def loop(states, buffers, actions, offline, seed_keys, start, n):
        if mixing_ratio is None:
            offline = None
        args = (states, buffers, actions, offline, seed_keys, np.int32(start), np.int32(n), np.int32(slot))
        leaves, tree = jax.tree.flatten(args)
        sig = (tree, tuple((np.shape(x), x.dtype) for x in leaves))
        if sig not in executables:
            executables[sig], loop.reused = _compiled_loop(program, args, lean_callback, sig)
        out = executables[sig](*args)
        jax.block_until_ready(out[2])
        if failure:
            err = failure.pop()
            failure.clear()
            raise err
        return out

    loop.program = program
    loop.reused = False
    weakref.finalize(loop, _LOOP_SLOTS.pop, slot, None)  # the environments are released with the loop
    return loop


def make_device_online_loop(learner, collector: DeviceCollector, utd: int, mixing_ratio: float | None, train: bool,
                            hold_policy_until: int = 0):
    """:func:`make_online_loop` with JAX-native environments: the environments of ``collector``
    (:class:`DeviceCollector`) are stepped inside the program, so a chunk of steps runs on the
    device alone (no host call), with the per-step semantics of :func:`make_online_step`.

    ``(states, buffers, actions, offline, seed_keys, start, n) -> (states, buffers, actions, metrics)``,
    as :func:`make_online_loop`'s; the environments' states and observations are read from and
    written back to ``collector``. States and buffers are donated.
    """
    per_seed = _online_per_seed(learner, utd, mixing_ratio, train, hold_policy_until)
    env, scale, bias = collector.env, collector.reward_scale, collector.reward_bias
    n_seeds = collector.n
    zeros = jnp.zeros(n_seeds, jnp.float32)

    def env_step(env_states, obs, actions, seed_keys, s):
        keys = jax.vmap(lambda k: DeviceCollector.env_key(k, s))(seed_keys)
        env_states, next_obs, final_obs, rew, term, trunc = jax.vmap(env.step)(keys, env_states, actions)
        t = Transitions(obs=obs, action=actions, reward=rew * scale + bias, next_obs=final_obs,
                        terminated=term.astype(jnp.float32), truncated=trunc.astype(jnp.float32),
                        episode=jnp.full(n_seeds, -1, jnp.int32), rtg=zeros,
                        mc_return=jnp.full(n_seeds, replay.NO_MC_RETURN, jnp.float32), traj_return=zeros)
        return env_states, replay.pack(t), next_obs

    def run(states, buffers, env_states, obs, actions, offline, seed_keys, start, n):
        def one_step(i, carry):
            states, buffers, env_states, obs, actions, _ = carry
            s = start + i + 1
            env_states, rows, obs = env_step(env_states, obs, actions, seed_keys, s)
            states, buffers, actions, metrics = per_seed(states, buffers, rows, obs, offline, seed_keys, s)
            return states, buffers, env_states, obs, actions, metrics

        metrics0 = jax.eval_shape(lambda: per_seed(states, buffers, env_step(env_states, obs, actions, seed_keys, start)[1],
                                                   obs, offline, seed_keys, start)[3])
        metrics0 = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics0)
        return jax.lax.fori_loop(0, n, one_step, (states, buffers, env_states, obs, actions, metrics0))

    program = jax.jit(run, donate_argnums=(0, 1))

    def loop(states, buffers, actions, offline, seed_keys, start, n):
        if mixing_ratio is None:
            offline = None
        states, buffers, collector.env_state, collector.obs, actions, metrics = program(
            states, buffers, collector.env_state, collector.obs, actions, offline, seed_keys, np.int32(start), np.int32(n))
        return states, buffers, actions, metrics

    loop.program = program
    return loop


def make_act_step(learner):
    """``(states, obs, seed_keys, step) -> actions``: exploratory actions, no insert, no update."""

    def per_seed(state, obs, seed_key, step):
        k_act, _ = jax.random.split(jax.random.fold_in(seed_key, step))
        return learner.act(state, obs, k_act, False)

    return jax.jit(seed_vmap(per_seed, (0, 0, 0, None)))


# ------------------------------------------------------------------------------------------------
# The host call
# ------------------------------------------------------------------------------------------------
try:  # JAX internals; the public io_callback below is the fallback.
    from jax._src import callback as _jcb
    from jax._src import core as _jcore
    from jax._src.interpreters import mlir as _mlir

    _ORDERED = _jcb._OrderedIOEffect
    _emit = _jcb.emit_python_callback

    _host_call_p = _jcore.Primitive("smac_host_call")
    _host_call_p.multiple_results = True

    def _abstract_eval(*avals, fn, result_avals):
        del avals, fn
        return result_avals, {_ORDERED}

    _host_call_p.def_effectful_abstract_eval(_abstract_eval)

    def _impl(*args, fn, result_avals):
        del result_avals
        return [jax.numpy.asarray(r) for r in fn(*(np.asarray(a) for a in args))]

    _host_call_p.def_impl(_impl)

    def _lowering(ctx, *args, fn, result_avals):
        del result_avals
        token = ctx.tokens_in.get(_ORDERED)
        result, token, _ = _emit(ctx, lambda *xs: tuple(fn(*xs)), token, list(args), ctx.avals_in,
                                 ctx.avals_out, has_side_effect=True, returns_token=True)
        ctx.set_tokens_out(ctx.tokens_in.update_tokens(_mlir.TokenSet({_ORDERED: token})))
        return result

    _mlir.register_lowering(_host_call_p, _lowering, platform="cpu")
    LEAN = True
except (ImportError, AttributeError, TypeError):  # pragma: no cover - depends on the JAX version
    LEAN = False


_WORKS: list[bool] = []
_WARNED: list[bool] = []


def lean_path_works() -> bool:
    """Whether the lean path imports, compiles and returns the right values on this JAX (checked
    once per process with a tiny program; a JAX whose internals changed falls back to
    ``io_callback`` instead of failing inside the training loop)."""
    if not _WORKS:
        ok = False
        if LEAN:
            try:
                aval = _jcore.ShapedArray((2,), np.float32)
                f = jax.jit(lambda x: _host_call_p.bind(x, fn=lambda v: (np.asarray(v + 1.0, np.float32),),
                                                        result_avals=(aval,))[0])
                with jax.ensure_compile_time_eval():  # also when first asked while tracing a program
                    ok = bool(np.array_equal(np.asarray(f(jax.numpy.arange(2.0, dtype=np.float32))), [1.0, 2.0]))
            except Exception:  # noqa: BLE001 - any failure means: use the public path
                ok = False
        _WORKS.append(ok)
    return _WORKS[0]


def host_call(fn: Callable[..., Sequence[np.ndarray]], result_shapes: Sequence[jax.ShapeDtypeStruct],
              *args, lean: bool = False) -> tuple[jax.Array, ...]:
    """Call ``fn(*numpy_args) -> tuple of numpy arrays`` on the host, in program order.

    ``result_shapes``: a ``jax.ShapeDtypeStruct`` per result; ``fn`` must return arrays of exactly
    these shapes and dtypes (a mismatch raises inside the call). By default (and where the lean
    path is asked for but this JAX or backend cannot take it, with a warning) this is the public
    ``io_callback(fn, result_shapes, *args, ordered=True)``, with ``fn`` given NumPy arrays; the
    lean path is opt-in (``lean=True``, the pipeline's ``online.lean_host_call``).
    """
    result_shapes = tuple(result_shapes)
    if lean and not (lean_path_works() and jax.default_backend() == "cpu") and not _WARNED:
        _WARNED.append(True)
        warnings.warn("online.lean_host_call: the lean host call is not available on this JAX version or "
                      "backend; using jax.experimental.io_callback (same results, a little slower on CPU)")
    if lean and lean_path_works() and jax.default_backend() == "cpu":
        avals = tuple(_jcore.ShapedArray(s.shape, s.dtype) for s in result_shapes)
        return tuple(_host_call_p.bind(*args, fn=fn, result_avals=avals))
    from jax.experimental import io_callback

    return tuple(io_callback(lambda *xs: tuple(fn(*(np.asarray(x) for x in xs))), result_shapes, *args,
                             ordered=True))
