"""The transfer matrix (docs/algorithms.md, "Hand-over"): every offline learner hands over to every online learner.

For every (offline, online) pair, on (16, 16) networks and the tiny Pendulum dataset (tests/conftest.py):

* the offline learner runs a few updates through the pipeline's own jitted, seed-vmapped,
  scan-fused step (:func:`smac_jax.training.steps.make_offline_step`), 2 seeds;
* the online learner takes over with pipeline.run's ``jax.jit(jax.vmap(lambda k, s: on.transfer(k, s, off)))``;
* (a) the online learner's deterministic action on a batch of dataset states equals the offline one's;
  (b) Gaussian -> Gaussian keeps the log-std output (the same action distribution), deterministic ->
  Gaussian gets the configured ``transfer_log_std_init``, Gaussian -> deterministic drops the head;
  (c) every transferable group both sides have (critic, target critic, temperature, V, target actor)
  is carried over unchanged, the state has the online learner's own layout, optimiser states are
  fresh and the step counter restarts at 0;
  (d) a few online steps through :func:`smac_jax.training.online.make_online_step` (``train=True``,
  with the replay ``configs/o2o.py`` gives that online learner, e.g. Cal-QL's ``mix``) give finite
  metrics and parameters.

Every pair bridges; none raises. What cannot be bridged is an architecture mismatch, checked to raise
a :class:`TransferError` naming both learners before any training. Three representative pairs also
run through the real ``pipeline.run``.

Cost. XLA compilation dominates, so every program is compiled once and shared by the parametrised
cases: per learner its init, offline step and policy outputs, per online learner its online step,
per offline learner one program holding its hand-over to all seven online learners. They are
compiled without LLVM's optimisations (a third to a sixth of the compile time; the checks are about
values, not speed) in two background threads, in the order the cases need them, and the pipeline
runs follow in the same threads, overlapping with the checks in the main thread.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_o2o_config_module, tree_allclose

from smac_jax import networks
from smac_jax.data import replay
from smac_jax.data.dataset import load_dataset
from smac_jax.learners import TransferError, available_learners, make_learner
from smac_jax.learners.handover import TRANSFERABLE
from smac_jax.score import model as sm
from smac_jax.training import pipeline
from smac_jax.training.online import make_online_step
from smac_jax.training.steps import make_offline_step, unalias
from smac_jax.training.summary import drop_window_warning

# Every registered learner except the online-only methods (ACA's aligned critic and the SAMG
# wrappers need a hand-over; tests/test_aca.py and tests/test_samg.py cover their hand-overs).
OFFLINE_LEARNERS = [n for n in available_learners() if n != "aca" and not n.startswith("samg_")]
ONLINE_LEARNERS = ("sac", "td3", "td3bc", "awac", "awr", "iql", "calql")
SMALL = {"hidden_dims": (16, 16), "batch_size": 16}
N_SEEDS = 2
OFFLINE_UPDATES = 4
ONLINE_STEPS = 3
N_OBS = 32  # dataset states the policies are compared on

#: XLA options of the matrix's programs: no LLVM optimisation (compile time, not run time, is what
#: costs here).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def aot(fn, *args):
    """``fn`` (a ``jax.jit`` function) lowered for ``args`` (arrays or shapes) and compiled with
    ``COMPILER_OPTIONS``; the result is called like ``fn`` (donations included)."""
    return fn.lower(*args).compile(compiler_options=COMPILER_OPTIONS)


def small_score_config():
    c = sm.default_score_config()
    c.hidden_dim, c.n_blocks, c.time_dim, c.time_mlp_dim = 16, 1, 8, 16
    return c


def build_learner(name: str, obs_dim: int, act_dim: int, overrides=None):
    learner = make_learner(name, obs_dim, act_dim, {**SMALL, **(overrides or {})})
    if name == "smac":  # an (untrained) tiny score model, as in tests/test_smac.py
        cfg = small_score_config()
        key = jax.random.PRNGKey(7)
        init = aot(jax.jit(lambda k: sm.init_score_model(k, obs_dim, act_dim, cfg).ema_params), key)
        learner.set_score_params(init(key), cfg)
    return learner


def to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def assert_finite(tree, what: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        v = np.asarray(leaf)
        assert np.isfinite(v).all(), f"{what}: {jax.tree_util.keystr(path)} is not finite: {v}"


def test_matrix_covers_every_registered_learner():
    assert set(OFFLINE_LEARNERS) >= {"awac", "awr", "bc", "calql", "cql", "iql", "sac", "sacml", "smac", "td3", "td3bc"}
    assert set(ONLINE_LEARNERS) <= set(OFFLINE_LEARNERS)


def test_online_learner_defaults_in_config():
    mod = load_o2o_config_module()
    assert mod.ONLINE_LEARNER_DEFAULTS["calql"] == {"replay.init": "mix", "replay.mixing_ratio": 0.5}
    calql = mod.get_config("pendulum,cql,calql").online.replay
    assert (calql.init, calql.mixing_ratio) == ("mix", 0.5)
    assert mod.get_config("pendulum,iql,iql").online.replay.init == "full"
    # Other online learners keep the task's replay, and the offline side gets nothing.
    assert mod.get_config("pendulum,smac,sac").online.replay.init == "empty"
    assert mod.get_config("pendulum,calql,sac").online.replay.init == "empty"
    assert mod.get_config("pendulum,iql,td3").online.replay.init == "empty"


def test_every_task_evaluates_an_updated_policy_inside_the_drop_window():
    """The transfer drop's window (first 10% of the online phase) must hold an evaluation made
    after the first online update, or the drop compares the handed-over policy with itself."""
    mod = load_o2o_config_module()
    for task in mod.TASKS:
        on = mod.get_config(task).online
        steps = list(range(0, on.steps + 1, on.eval_every))
        assert drop_window_warning(steps, on.steps, on.learning_starts) is None, task
    # The default job is the pendulum-medium dataset and offline budget with a shorter online phase.
    quick, full = mod.get_config("quickstart"), mod.get_config("pendulum-medium")
    assert quick.dataset == full.dataset and quick.offline.steps == full.offline.steps
    assert quick.online.steps < full.online.steps
    # The check bites: the quickstart budget with the other tasks' learning_starts (1,000) and
    # evaluations every 1,000 steps warns.
    n = quick.online.steps
    assert drop_window_warning(list(range(0, n + 1, 1_000)), n, full.online.learning_starts) is not None


# ---------------------------------------------------------------------------------------------
# Shared data and the compiled programs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(pendulum_dataset_id):
    t = load_dataset(pendulum_dataset_id).transitions
    obs_dim, act_dim = t.obs.shape[-1], t.action.shape[-1]
    seed_keys = jax.random.split(jax.random.PRNGKey(0), N_SEEDS)
    fold = lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(seed_keys)  # as pipeline.run derives them
    return dict(
        data_np=t,
        data=jax.device_put(jax.tree.map(jnp.asarray, t)),
        obs_dim=obs_dim,
        act_dim=act_dim,
        obs=jnp.asarray(t.obs[:: max(1, t.obs.shape[0] // N_OBS)][:N_OBS]),
        init_keys=fold(0),
        transfer_keys=fold(1),
        offline_keys=fold(2),
        online_keys=fold(3),
        learners={n: build_learner(n, obs_dim, act_dim) for n in OFFLINE_LEARNERS},
    )


def online_replay(name: str):
    """(replay init, mixing ratio or None) that ``configs/o2o.py`` gives online learner ``name``."""
    rc = load_o2o_config_module().get_config(f"pendulum,sac,{name}").online.replay
    return rc.init, (rc.mixing_ratio if rc.init == "mix" else None)


def online_buffers(name: str, env):
    """Fresh per-seed replay buffers (online capacity 64), initialised as for online learner ``name``."""
    init, _ = online_replay(name)
    return pipeline.stack_seeds(replay.init_replay(init, env["data_np"], env["obs_dim"], env["act_dim"], 64), N_SEEDS)


def online_transition(env, t: int):
    """The ``t``-th online transition of each seed as the collector writes it (no dataset episode, no
    Monte-Carlo bound), and the next observations."""
    dnp = env["data_np"]
    idx = np.arange(N_SEEDS) * 37 + t
    tr = jax.tree.map(lambda x: np.asarray(x)[idx], dnp)
    tr = tr.replace(episode=np.full(N_SEEDS, -1, np.int32),
                    mc_return=np.full(N_SEEDS, replay.NO_MC_RETURN, np.float32))
    return tr, jnp.asarray(np.asarray(dnp.next_obs)[idx])


def policy_outputs(learner):
    """Per seed: the deterministic action on a batch of states and, for a Gaussian actor, its log-std."""
    key = jax.random.PRNGKey(2)

    def per_seed(state, obs):
        action = learner.act(state, obs, key, True)
        if learner.actor_kind != "gaussian":
            return action, None
        dist = networks.gaussian_actor(learner.config, learner.act_dim).apply(state.params["actor"], obs)
        return action, jnp.log(dist.distribution.scale_diag)

    return jax.jit(jax.vmap(per_seed, in_axes=(0, None)))


class Programs:
    """The matrix's compiled programs (see the module docstring) and the results shared by the cases."""

    def __init__(self, env, pool: ThreadPoolExecutor):
        self.env = env
        self.pool = pool
        self.futures: dict[tuple[str, str], Future] = {}
        self.abstract: dict[str, object] = {}
        self.offline_states: dict[str, object] = {}
        self.transfers: dict[str, dict | None] = {}

    def submit(self, kind: str, name: str) -> None:
        if (kind, name) not in self.futures:
            self.futures[(kind, name)] = self.pool.submit(getattr(self, f"_compile_{kind}"), name)

    def get(self, kind: str, name: str):
        self.submit(kind, name)
        return self.futures[(kind, name)].result()

    def abstract_states(self, name: str):
        """Shapes and dtypes of the learner's initial states (seed axis first)."""
        if name not in self.abstract:
            self.abstract[name] = jax.eval_shape(jax.vmap(self.env["learners"][name].init), self.env["init_keys"])
        return self.abstract[name]

    # -- compilation (background threads) ---------------------------------------------------
    def _compile_init(self, name):
        return aot(jax.jit(jax.vmap(self.env["learners"][name].init)), self.env["init_keys"])

    def _compile_offline(self, name):
        env = self.env
        step = make_offline_step(env["learners"][name], OFFLINE_UPDATES)
        return aot(step, self.abstract_states(name), env["data"], env["offline_keys"], 0)

    def _compile_online(self, name):
        env = self.env
        tr, next_obs = online_transition(env, 1)
        mixing = online_replay(name)[1]
        step = make_online_step(env["learners"][name], 1, mixing, train=True)
        offline = env["data"] if mixing is not None else None
        program = aot(step.program, self.abstract_states(name), online_buffers(name, env), replay.pack(tr, np),
                      next_obs, offline, env["online_keys"], 1)

        def run(states, bufs, t, obs, offline, keys, i):  # what make_online_step's step does
            return program(states, bufs, replay.pack(t, np), obs, None if mixing is None else offline, keys, i)

        return run

    def _compile_policy(self, name):
        return aot(policy_outputs(self.env["learners"][name]), self.abstract_states(name), self.env["obs"])

    def _compile_transfer(self, name):
        """pipeline.run's hand-over, ``jax.vmap(lambda k, s: on.transfer(k, s, off))``, from ``name`` to
        every online learner in one program; None if some pair cannot be bridged (then each pair is
        handed over, and fails, on its own: :meth:`transferred`)."""
        learners, off = self.env["learners"], self.env["learners"][name]

        def every_pair(keys, states):
            return {on: jax.vmap(lambda k, s, on=on: learners[on].transfer(k, s, off))(keys, states)
                    for on in ONLINE_LEARNERS}

        try:
            return aot(jax.jit(every_pair), self.env["transfer_keys"], self.abstract_states(name))
        except TransferError:
            return None

    # -- shared results (main thread) ----------------------------------------------------------
    def offline_result(self, name: str):
        """The offline learner's states after ``OFFLINE_UPDATES`` updates per seed (computed once)."""
        if name not in self.offline_states:
            env = self.env
            states = unalias(self.get("init", name)(env["init_keys"]))
            states, metrics = self.get("offline", name)(states, env["data"], env["offline_keys"], 0)
            assert_finite(metrics, f"offline {name} metrics")
            np.testing.assert_array_equal(np.asarray(states.step), [OFFLINE_UPDATES] * N_SEEDS)
            self.offline_states[name] = states
        return self.offline_states[name]

    def transferred(self, offline: str, online: str):
        """The online learner's states handed over from the offline learner's (seed axis first; may
        share buffers with the offline states, as in pipeline.run before its ``unalias``)."""
        keys, states = self.env["transfer_keys"], self.offline_result(offline)
        if offline not in self.transfers:
            program = self.get("transfer", offline)
            self.transfers[offline] = None if program is None else program(keys, states)
        if self.transfers[offline] is None:
            on, off = self.env["learners"][online], self.env["learners"][offline]
            return aot(jax.jit(jax.vmap(lambda k, s: on.transfer(k, s, off))), keys, states)(keys, states)
        return self.transfers[offline][online]


@pytest.fixture(scope="module")
def pool():
    """Two background threads (XLA compiles without holding the GIL)."""
    ex = ThreadPoolExecutor(max_workers=2)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def programs(env, pool, request):
    """The shared programs. Starts compiling what the selected ``test_handover`` cases need, in their
    order, and queues the selected pipeline runs behind. (Not under pytest-xdist, where a worker does
    not know which cases it will get: there everything is compiled, or run, when first needed.)"""
    progs = Programs(env, pool)
    if hasattr(request.config, "workerinput"):
        return progs
    selected = [(item.originalname, item.callspec.params) for item in request.session.items
                if getattr(item, "originalname", "") in ("test_handover", "test_pipeline_pair")]
    for name, params in selected:
        if name == "test_handover":
            off, on = params["offline"], params["online"]
            for kind in ("init", "offline", "policy", "transfer"):
                progs.submit(kind, off)
            progs.submit("policy", on)
            progs.submit("online", on)
    runs = request.getfixturevalue("pipeline_runs")
    for name, params in selected:
        if name == "test_pipeline_pair":
            runs.start(params["offline"], params["online"])
    return progs


# ---------------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("online", ONLINE_LEARNERS)
@pytest.mark.parametrize("offline", OFFLINE_LEARNERS)
def test_handover(offline, online, env, programs):
    off, on = env["learners"][offline], env["learners"][online]
    off_states = programs.offline_result(offline)
    off_np = to_numpy(off_states)
    obs = env["obs"]

    # The hand-over. (pipeline.run's pre-check, jax.eval_shape of the same function, traces what is
    # compiled here: a pair that cannot be bridged raises TransferError naming both, at this line.)
    on_states = unalias(programs.transferred(offline, online))
    on_np = to_numpy(on_states)
    assert tree_allclose(to_numpy(off_states.params), off_np.params)  # the offline states are untouched
    # The online states have exactly the online learner's own layout (shapes and dtypes).
    fresh = programs.abstract_states(online)
    assert jax.tree.structure(fresh) == jax.tree.structure(on_states)
    for f, g in zip(jax.tree.leaves(fresh), jax.tree.leaves(on_states)):
        assert (f.shape, f.dtype) == (g.shape, g.dtype)
    np.testing.assert_array_equal(on_np.step, [0] * N_SEEDS)

    a_off, ls_off = to_numpy(programs.get("policy", offline)(off_states, obs))
    a_on, ls_on = to_numpy(programs.get("policy", online)(on_states, obs))
    assert a_on.shape == a_off.shape == (N_SEEDS, obs.shape[0], env["act_dim"])
    # (a) The same deterministic action.
    np.testing.assert_allclose(a_on, a_off, rtol=0, atol=1e-6, err_msg=f"{offline} -> {online}")
    assert np.abs(a_off).max() > 1e-3
    assert not np.allclose(a_on[0], a_on[1])  # each seed hands over its own state
    # (b) The same action distribution, or the configured log-std for a deterministic source.
    if on.actor_kind == "gaussian":
        if off.actor_kind == "gaussian":
            np.testing.assert_allclose(ls_on, ls_off, rtol=0, atol=1e-6, err_msg=f"{offline} -> {online}")
        else:
            np.testing.assert_allclose(ls_on, on.config.transfer_log_std_init, rtol=0, atol=1e-6)
    else:
        assert on.actor_kind == "deterministic" and ls_on is None
        assert "log_std" not in on_np.params["actor"]["params"]

    # (c) Every transferable group both sides have is carried over unchanged (all seeds at once).
    p_off, p_on = off_np.params, on_np.params
    carried = []
    for g in TRANSFERABLE:
        if g not in p_on:
            continue
        if g == "target_actor":
            src = p_off.get("target_actor", p_off["actor"])
        elif g == "target_critic" and "target_critic" not in p_off:
            src = p_off.get("critic")
        else:
            src = p_off.get(g)
        if src is None:
            continue
        carried.append(g)
        if g in ("actor", "target_actor"):
            # The shared layers are equal; a log-std head only where both actors are Gaussian.
            assert {"trunk", "mean"} <= set(p_on[g]["params"])
            for layer in ("trunk", "mean", "log_std"):
                if layer in p_on[g]["params"] and layer in src["params"]:
                    assert tree_allclose(p_on[g]["params"][layer], src["params"][layer]), (g, layer)
        else:
            assert tree_allclose(p_on[g], src), f"{offline} -> {online}: group {g!r} not carried over"
    assert "actor" in carried
    if "critic" in p_on:
        if "critic" in p_off:
            assert {"critic", "target_critic"} <= set(carried)
        else:  # e.g. BC: a fresh critic, with its target equal to it
            assert tree_allclose(p_on["target_critic"], p_on["critic"])
    if "log_temp" in p_off and "log_temp" in p_on:
        assert "log_temp" in carried
    # Optimiser states are fresh (docs/algorithms.md, "Hand-over").
    counts = [x for path, x in jax.tree_util.tree_flatten_with_path(on_np.opt_state)[0]
              if "count" in jax.tree_util.keystr(path)]
    assert counts and all((c == 0).all() for c in counts)

    # (d) A few online steps: insert, one update, the next exploratory action.
    train = programs.get("online", online)
    states, buffers = on_states, online_buffers(online, env)
    for t in range(1, ONLINE_STEPS + 1):
        tr, next_obs = online_transition(env, t)
        states, buffers, actions, metrics = train(states, buffers, tr, next_obs, env["data"], env["online_keys"], t)
        assert metrics, "train=True returned no metrics"
        assert_finite(metrics, f"{offline} -> {online} online metrics at step {t}")
        a = np.asarray(actions)
        assert a.shape == (N_SEEDS, env["act_dim"]) and np.all(np.abs(a) <= 1.0)
    np.testing.assert_array_equal(np.asarray(states.step), [ONLINE_STEPS] * N_SEEDS)
    assert_finite(states.params, f"{offline} -> {online} online params")


# ---------------------------------------------------------------------------------------------
# What cannot be bridged fails before any training, naming both learners
# ---------------------------------------------------------------------------------------------
def test_architecture_mismatch_raises_transfer_error(env):
    off = build_learner("sac", env["obs_dim"], env["act_dim"])
    on = build_learner("td3", env["obs_dim"], env["act_dim"], {"hidden_dims": (8, 8)})
    k = jax.random.PRNGKey(0)
    with pytest.raises(TransferError, match=r"sac -> td3: parameter group 'actor' differs in shape"):
        jax.eval_shape(lambda kk, s: on.transfer(kk, s, off), k, jax.eval_shape(off.init, k))


def test_pipeline_rejects_unbridgeable_pair_before_training(make_tiny_config, tmp_path):
    cfg = make_tiny_config("iql", "calql")
    cfg.online.agent.num_critics = 3  # IQL's 2-member critic cannot become a 3-member one
    with pytest.raises(TransferError, match=r"iql -> calql: parameter group 'critic'"):
        pipeline.run(cfg, str(tmp_path), progress=False)
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))  # failed before any training


# ---------------------------------------------------------------------------------------------
# Representative pairs through the real pipeline
# ---------------------------------------------------------------------------------------------
PIPELINE_PAIRS = [("smac", "td3"), ("iql", "sac"), ("td3bc", "awr")]


def pipeline_config(make_tiny_config, offline: str, online: str):
    """The tiny pipeline config (tests/conftest.py) with (16, 16) networks, batch 16 and shorter phases:
    2 offline chunks of 25 updates, 30 environment steps online (updates from step 11); for SMAC a
    tiny score model, which the pipeline fits itself (``SMAC.prepare``) in 50 steps."""
    cfg = make_tiny_config(offline, online, **{
        "offline.steps": 50, "offline.scan_steps": 25, "offline.eval_every": 25, "offline.ckpt_every": 50,
        "online.steps": 30, "online.learning_starts": 10, "online.eval_every": 15, "online.ckpt_every": 30,
    })
    for agent in (cfg.offline.agent, cfg.online.agent):
        agent.hidden_dims = SMALL["hidden_dims"]
        agent.batch_size = SMALL["batch_size"]
    if offline == "smac":
        sc = cfg.offline.agent.score_config
        sc.hidden_dim, sc.n_blocks, sc.time_dim, sc.time_mlp_dim, sc.steps, sc.batch_size = 16, 1, 8, 16, 50, 64
    return cfg


class PipelineRuns:
    """``pipeline.run`` of ``PIPELINE_PAIRS`` in the background pool, each started at most once."""

    def __init__(self, pool, make_tiny_config, tmp_path_factory):
        self.pool, self.make_tiny_config, self.tmp_path_factory = pool, make_tiny_config, tmp_path_factory
        self.runs: dict[tuple[str, str], tuple] = {}

    def start(self, offline: str, online: str) -> None:
        if (offline, online) not in self.runs:
            cfg = pipeline_config(self.make_tiny_config, offline, online)
            workdir = str(self.tmp_path_factory.mktemp(f"pipeline_{offline}_{online}"))
            self.runs[(offline, online)] = (cfg, workdir, self.pool.submit(pipeline.run, cfg, workdir, False, False))

    def get(self, offline: str, online: str):
        """(config, workdir, summary) of the finished run."""
        self.start(offline, online)
        cfg, workdir, future = self.runs[(offline, online)]
        return cfg, workdir, future.result()


@pytest.fixture(scope="module")
def pipeline_runs(pool, make_tiny_config, tmp_path_factory):
    return PipelineRuns(pool, make_tiny_config, tmp_path_factory)


@pytest.mark.parametrize("offline,online", PIPELINE_PAIRS)
def test_pipeline_pair(offline, online, pipeline_runs):
    cfg, workdir, summary = pipeline_runs.get(offline, online)

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    steps = sorted({(r["phase"], r["step"]) for r in rows})
    assert steps == [("offline", 25), ("offline", 50), ("online", 0), ("online", 15), ("online", 30)]
    assert len(rows) == len(steps) * cfg.n_seeds
    base = {"phase", "step", "seed", "eval_return", "eval_score"}
    value = {"q_start", "eval_discounted_return", "q_minus_return"}  # the evaluation's, for learners with a critic
    for r in rows:
        assert base <= set(r), r
        assert value <= set(r), sorted(r)  # every learner of PIPELINE_PAIRS has a critic
        for k, v in r.items():
            if k != "phase":
                assert isinstance(v, (int, float)) and math.isfinite(v), (r["phase"], r["step"], k, v)
        # Every evaluation but the one right after the hand-over logs the last training metrics.
        has_losses = bool(set(r) - base - value)
        assert has_losses == ((r["phase"], r["step"]) != ("online", 0)), (r["phase"], r["step"], sorted(r))
    # The online phase is evaluated on other episode seeds than the offline one, so the step-0
    # evaluation is not compared with the last offline one; the summary's fields must be there and finite.
    assert summary["offline_learner"] == offline and summary["online_learner"] == online
    for k in ("offline_final", "online_final", "transfer_drop"):
        assert len(summary[k]) == cfg.n_seeds and all(math.isfinite(x) for x in summary[k]), k
    for k in ("offline_final_mean", "online_final_mean", "online_final_return_mean", "transfer_drop_mean"):
        assert math.isfinite(summary[k]), k
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f) == summary
