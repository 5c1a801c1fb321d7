"""Throughput benchmarks (not part of CI).

Prints, in one run (so ratios compare like with like):
* a large float32 matmul's FLOP rate: the machine's peak reference;
* for every offline learner (obs 11, act 3, batch 256, 256x256 MLPs): updates/s per seed for
  1 and more vmapped seeds (``--seeds``), scan-fused (``--scan`` updates per dispatch), the median
  of ``--windows`` consecutive windows; the FLOP rate from XLA's cost analysis of one update, as a
  fraction of the matmul peak (median window, and best window); its cost relative to SAC's;
* SMAC's critic update against SAC's (same optimiser, and SMAC with Muon), and the score model's
  training rate;
* the online loop on Hopper-v5 (one env per seed, one update per environment step): environment
  steps/s, as a fraction of the pure scan-fused update rate timed in alternating windows
  (``--online_seeds``); the loop as the pipeline runs it (chunks of environment steps per
  dispatch), one dispatch per environment step, and the update alone one per dispatch.

    python experiments/benchmark.py
    python experiments/benchmark.py --learners=sac,smac --seeds=1,4,8 --json=bench.json

Peer comparison (``--peer_harness``): TD3+BC, CQL, IQL and AWAC against JAX-CORL's single-file
implementations on the same synthetic data (200k x obs 11, act 3), 1 seed, at the peer's network
sizes; the peer's own jitted ``update_n_times`` (8 updates per call) against this library's
offline step at 8 updates per dispatch and at ``--scan``, timed in alternating rounds in one
process (docs/README.md, "Against JAX-CORL"). It needs a directory holding a timing harness
module ``jaxcorl_bench`` (``setup(algo, n_jitted)`` returning the peer's module, config, dataset,
train state and jitted update; ``import_algo(algo)`` returning the peer's module, whose ``MLP`` is
swapped for one without LayerNorm to time the peer's own LayerNorm cost) and ``synthetic.make_dataset()``, and ``JAXCORL_DIR`` pointing at a
JAX-CORL checkout (plus ``pip install pydantic omegaconf``):

    JAXCORL_DIR=path/to/JAX-CORL python experiments/benchmark.py --peer_harness=path/to/harness

Environments on the device (``--device_env_seeds``): the online loop on ``--device_env_id``
(Pendulum-v1, or an MJX-stepped locomotion task) with Gymnasium's environments on the host against
their JAX-native port stepped inside the program (``online.env="jax"``, the ``jax-envs`` extra),
side by side at each seed count.

    python experiments/benchmark.py --device_env_seeds=1,8,64 --online_steps=2000 --online_rounds=10
    python experiments/benchmark.py --device_env_seeds=1,64 --device_env_id=Hopper-v5

Online loop compile time (``--loop_compile_rounds``): the online loop built and called once,
compiled afresh against reusing an identical loop's executable (``make_online_loop``).

    python experiments/benchmark.py --loop_compile_rounds=3
"""
from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from smac_jax.cli import fail, run_cli
from smac_jax.data import replay
from smac_jax.learners import available_learners, make_learner
from smac_jax.runtime import tune_host_allocator
from smac_jax.score import model as sm
from smac_jax.training.online import OnlineCollector, make_act_step, make_online_loop, make_online_step
from smac_jax.training.steps import make_offline_step, unalias

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import ACT, BATCH, OBS, PEER_MATCHED, build, fake_data, offline_call, offline_data  # noqa: E402

_LEARNERS = flags.DEFINE_list("learners", None, "Offline learners to time (default: all registered).")
_SEEDS = flags.DEFINE_list("seeds", ["1", "4", "8"], "Numbers of vmapped seeds.")
_SCAN = flags.DEFINE_integer("scan", 100, "Updates fused per dispatch.")
_SECONDS = flags.DEFINE_float("seconds", 3.0, "Minimum timing per measurement.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Offline rates: the median of this many consecutive windows "
                                "is reported (and the best window's share of peak).")
_ONLINE_STEPS = flags.DEFINE_integer("online_steps", 3000, "Environment steps timed on Hopper-v5 per seed count "
                                     "(in alternating windows with the pure update; 0 skips).")
_ONLINE_ROUNDS = flags.DEFINE_integer("online_rounds", 10, "Alternating rounds for the online loop (each times "
                                     "online_steps / online_rounds steps of every variant).")
_ONLINE_SEEDS = flags.DEFINE_list("online_seeds", ["1", "8"], "Seed counts for the online loop.")
_TUNE_MALLOC = flags.DEFINE_bool("tune_malloc", True, "Keep XLA temporaries in the malloc heap "
                                  "(smac_jax.runtime.tune_host_allocator); --notune_malloc shows glibc defaults.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_METHODS = flags.DEFINE_integer("methods_rounds", 0, "Alternating rounds timing the ACA update (handed over from "
                                "SAC+ML) and the SAMG-wrapped SAC update (handed over from SAC, guidance on) "
                                "against plain SAC, 1 seed (0 skips).")
_PEER = flags.DEFINE_string("peer_harness", None, "Directory of a JAX-CORL timing harness: run the peer "
                            "comparison (module docstring) instead of the benchmarks above.")
_PEER_ALGOS = flags.DEFINE_list("peer_algos", ["td3bc", "cql", "iql", "awac"], "Algorithms of the peer comparison.")
_PEER_ROUNDS = flags.DEFINE_integer("peer_rounds", 4, "Alternating rounds of the peer comparison.")
_PEER_UPDATES = flags.DEFINE_integer("peer_updates", 800, "Updates timed per variant per round.")
_DEVICE_ENV = flags.DEFINE_list("device_env_seeds", [], "Only time the online loop on --device_env_id with the "
                                 "environments on the host against their JAX-native port on the device "
                                 "(online.env='jax'), at these seed counts (e.g. 1,8,64).")
_DEVICE_ENV_ID = flags.DEFINE_string("device_env_id", "Pendulum-v1", "The environment of --device_env_seeds: one "
                                     "with a JAX-native port (smac_jax.jax_envs.SUPPORTED).")
_LOOP_COMPILE = flags.DEFINE_integer("loop_compile_rounds", 0, "Only time, over this many rounds, how long the "
                                     "online loop takes from being built to the end of its first call: compiled "
                                     "afresh, and reusing the executable of an identical earlier loop.")

def timed(fn, seconds: float, warmup: bool = True) -> float:
    """Calls/s of ``fn`` (blocking), after one warm-up call unless ``warmup`` is False, over at
    least ``seconds``."""
    if warmup:
        jax.block_until_ready(fn())
    n, t0 = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn())
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def timed_windows(fn, seconds: float, windows: int) -> list[float]:
    """Calls/s of ``fn`` in ``windows`` consecutive windows of ``seconds / windows`` each, after
    one warm-up call.

    On a 2-core VM (docs/README.md) the rate of the same small-kernel XLA program switches between
    two levels (e.g. SAC at ~300 or ~480 updates/s) every few tens of seconds, while a large
    matmul does not; the windows show which level a measurement saw.
    """
    jax.block_until_ready(fn())
    return [timed(fn, seconds / windows, warmup=False) for _ in range(windows)]


def matmul_peak(seconds: float, n: int = 2048) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n))
    f = jax.jit(lambda x, y: x @ y)
    return timed(lambda: f(a, b), seconds) * 2 * n**3


def offline_rate(learner, data, n_seeds: int, scan: int, seconds: float, windows: int) -> list[float]:
    """Updates per second per seed in each of ``windows`` consecutive timing windows."""
    return [r * scan for r in timed_windows(offline_call(learner, data, scan, n_seeds), seconds, windows)]


def online_rate(n_seeds: int, window: int, rounds: int) -> dict:
    """The online loop on Hopper-v5 (``n_seeds`` environments, one SAC update per step per seed)
    against the pure scan-fused update rate at the same seed count, timed side by side.

    The update rate can drift between two levels over tens of seconds (on a 2-core VM, the
    same program runs at ~300 or ~480 updates/s). A ratio of two rates timed at different moments
    mixes those levels, so all are timed in alternating windows of ``window`` steps and the ratio
    is taken per round; the median round is reported, with the extremes. Timed each round:

    * ``fused``: the pipeline's loop, ``make_online_loop``: ``window`` environment steps per
      dispatch, the environments stepped from inside the program by the lean host call
      (``smac_jax.training.online.host_call``);
    * ``fused_io_callback``: the same loop stepping the environments through
      ``jax.experimental.io_callback``;
    * ``per_step``: ``make_online_step``, one dispatch per environment step;
    * ``pure``: the scan-fused update, ``window`` updates per dispatch, no environment;
    * ``one_per_dispatch``: the same update one per dispatch, no environment.
    """
    from smac_jax.envs import make_env

    learner = make_learner("sac", OBS, ACT)
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    filled = replay.insert_many(replay.empty_buffer(OBS, ACT, 200_000), fake_data(10_000))
    data = fake_data()
    box = {"i": 1}

    def fresh(name):
        box[name] = unalias(jax.vmap(learner.init)(keys))

    for name in ("fused", "fused_io_callback", "per_step"):
        collector = OnlineCollector(lambda: make_env("Hopper-v5"), list(range(n_seeds)))
        box[name + "/collector"] = collector
        fresh(name)
        box[name + "/b"] = unalias(jax.tree.map(lambda x: jnp.stack([x] * n_seeds), filled))
        box[name + "/a"] = make_act_step(learner)(box[name], collector.obs, keys, 0)
    loops = {name: make_online_loop(learner, box[name + "/collector"].step_packed, n_seeds, 1, None, train=True,
                                    lean_callback=name == "fused") for name in ("fused", "fused_io_callback")}
    step = make_online_step(learner, 1, None, train=True)
    pure_step, single_step = make_offline_step(learner, window), make_offline_step(learner, 1)
    fresh("pure"), fresh("one_per_dispatch")

    def fused(name="fused"):
        box[name], box[name + "/b"], box[name + "/a"], _ = loops[name](box[name], box[name + "/b"], box[name + "/a"],
                                                                       None, keys, box["i"], window)
        box["i"] += window

    def per_step():
        c = box["per_step/collector"]
        for _ in range(window):
            t, nxt = c.step(np.asarray(box["per_step/a"]))
            box["per_step"], box["per_step/b"], box["per_step/a"], _ = step(
                box["per_step"], box["per_step/b"], t, nxt, None, keys, box["i"])
            box["i"] += 1
        jax.block_until_ready(box["per_step/a"])

    def pure():
        box["pure"], _ = pure_step(box["pure"], data, keys, box["i"])
        jax.block_until_ready(box["pure"])

    def one_per_dispatch():
        for _ in range(window):
            box["one_per_dispatch"], _ = single_step(box["one_per_dispatch"], data, keys, box["i"])
            box["i"] += 1
        jax.block_until_ready(box["one_per_dispatch"])

    fns = {"fused": fused, "fused_io_callback": lambda: fused("fused_io_callback"), "per_step": per_step,
           "pure": pure, "one_per_dispatch": one_per_dispatch}
    for fn in fns.values():  # compile
        fn()
    rates = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            rates[k].append(window / (time.perf_counter() - t0))
    for name in ("fused", "fused_io_callback", "per_step"):
        box[name + "/collector"].close()
    r = {k: np.asarray(v) for k, v in rates.items()}
    frac = r["fused"] / r["pure"]
    out = {"seeds": n_seeds, "env_steps_per_s": float(np.median(r["fused"])),
           "pure_update_per_s": float(np.median(r["pure"])),
           "fraction": float(np.median(frac)), "fraction_min": float(frac.min()), "fraction_max": float(frac.max()),
           "io_callback_env_steps_per_s": float(np.median(r["fused_io_callback"])),
           "io_callback_fraction": float(np.median(r["fused_io_callback"] / r["pure"])),
           "lean_over_io_callback": float(np.median(r["fused"] / r["fused_io_callback"])),
           "per_step_env_steps_per_s": float(np.median(r["per_step"])),
           "per_step_fraction": float(np.median(r["per_step"] / r["pure"])),
           "one_per_dispatch_per_s": float(np.median(r["one_per_dispatch"])),
           "one_per_dispatch_fraction": float(np.median(r["one_per_dispatch"] / r["pure"])),
           "levels": _by_level(r),
           "rounds": [{k: float(v[i]) for k, v in r.items()} for i in range(rounds)]}
    return out


def loop_compile_time(rounds: int, n_seeds: int = 1) -> dict:
    """Seconds from building the pipeline's online loop (SAC at its default sizes on Hopper-v5,
    ``n_seeds`` environments) to the end of its first call of one environment step, in
    alternating rounds: ``compiled`` with no compiled loop in the process (lowering, compiling,
    one step), ``reused`` right after (lowering, finding the identical program, one step)."""
    from smac_jax.envs import make_env
    from smac_jax.training.online import clear_compiled_loops

    learner = make_learner("sac", OBS, ACT)
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    buffer = replay.insert_many(replay.empty_buffer(OBS, ACT, 10_000), fake_data(1_000))
    times: dict[str, list[float]] = {"compiled": [], "reused": []}
    for _ in range(rounds):
        for kind in times:
            if kind == "compiled":
                clear_compiled_loops()
            collector = OnlineCollector(lambda: make_env("Hopper-v5"), list(range(n_seeds)))
            states = unalias(jax.vmap(learner.init)(keys))
            buffers = unalias(jax.tree.map(lambda x: jnp.stack([x] * n_seeds), buffer))
            actions = make_act_step(learner)(states, collector.obs, keys, 0)
            t0 = time.perf_counter()
            loop = make_online_loop(learner, collector.step_packed, n_seeds, 1, None, train=True)
            loop(states, buffers, actions, None, keys, 0, 1)
            times[kind].append(time.perf_counter() - t0)
            collector.close()
            if loop.reused != (kind == "reused"):
                raise RuntimeError(f"loop_compile_time: the {kind} loop has reused={loop.reused}")
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"seeds": n_seeds, "median_s": med, "ratio": med["compiled"] / med["reused"],
            "rounds": [{k: v[i] for k, v in times.items()} for i in range(rounds)]}


def _by_level(r: dict) -> dict:
    """The rounds split by the machine's speed level, told by the two update-only rates (``pure``
    and ``one_per_dispatch``, each against the midpoint of its own range): rounds where both
    agree are kept, and the median fused / pure fraction is given per level. Empty if the pure
    rate did not move by 20% (one level throughout)."""
    pure = r["pure"]
    if pure.max() < 1.2 * pure.min():
        return {}
    side = {k: r[k] > (r[k].min() + r[k].max()) / 2 for k in ("pure", "one_per_dispatch")}
    out = {}
    for name, fast in (("fast", True), ("slow", False)):
        keep = (side["pure"] == fast) & (side["one_per_dispatch"] == fast)
        if keep.any():
            out[name] = {"rounds": int(keep.sum()), "pure_update_per_s": float(np.median(pure[keep])),
                         "fraction": float(np.median(r["fused"][keep] / pure[keep])),
                         "io_callback_fraction": float(np.median(r["fused_io_callback"][keep] / pure[keep])),
                         "per_step_fraction": float(np.median(r["per_step"][keep] / pure[keep]))}
    return out


PEER_LN_FIELD = {"td3bc": "layer_norm", "awac": "add_layer_norm"}  # the peer MLP's LayerNorm switch


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def offline_update_flops(learner, data) -> float:
    """FLOPs of one update as the offline step runs it (XLA's cost analysis): for a learner with
    ``update_period`` p, the p phases of ``update_phase`` unrolled, divided by p."""
    state = learner.init(jax.random.PRNGKey(0))
    batch = jax.tree.map(lambda x: x[:BATCH], data)
    p = learner.update_period

    def updates(st, b, k):
        for phase in range(p):
            st, _ = learner.update_phase(st, b, k, phase) if p > 1 else learner.update(st, b, k)
        return st

    return _flops(jax.jit(updates).lower(state, batch, jax.random.PRNGKey(1)).compile()) / p


def _peer_arm(jaxcorl_bench, algo: str, without_layer_norm: bool = False):
    """``(call, n, flops_per_update)`` for the peer's jitted ``update_n_times``; with
    ``without_layer_norm`` its MLP class is swapped, while the program is built and compiled, for a
    subclass with the LayerNorm switch off (the peer's own LayerNorm cost, same code otherwise)."""
    module = jaxcorl_bench.import_algo(algo)
    original = getattr(module, "MLP", None)
    if without_layer_norm:
        field = PEER_LN_FIELD[algo]

        class MLPWithoutLayerNorm(original):
            def __post_init__(self):
                object.__setattr__(self, field, False)
                super().__post_init__()

        module.MLP = MLPWithoutLayerNorm
    try:
        _m, config, dataset, peer_state, peer_update, rng, *_ = jaxcorl_bench.setup(algo, None)
        n = config.n_jitted_updates
        flops = _flops(peer_update.lower(peer_state, dataset, rng, config).compile()) / n
        box = {"peer": peer_state, "rng": rng}

        def call():
            box["rng"], key = jax.random.split(box["rng"])
            box["peer"], _info = peer_update(box["peer"], dataset, key, config)
            return box["peer"]

        jax.block_until_ready(call())  # traced and compiled with the swapped class in place
    finally:
        if without_layer_norm:
            module.MLP = original
    return call, n, flops


def peer_comparison(harness: str, algos, rounds: int, updates: int, scan: int, peak_gflops: float,
                    on_row=None) -> dict:
    """Updates/s (median over alternating rounds) of JAX-CORL and of this library, per algorithm,
    with each program's FLOPs per update and FLOP rate as a share of the matmul peak.
    ``on_row(results)`` is called after each algorithm (so a run stopped part-way keeps its rows)."""
    data = offline_data(harness)  # the harness's synthetic dataset; puts the harness on sys.path
    try:
        import jaxcorl_bench
    except ImportError as e:
        fail(f"--peer_harness={harness}: cannot import the harness ({e})")
    obs_dim, act_dim = data.obs.shape[1], data.action.shape[1]
    results = {}
    for algo in algos:
        variants, flops = {}, {}
        call, k, flops["jax-corl"] = _peer_arm(jaxcorl_bench, algo)
        variants["jax-corl"] = (call, k)
        if algo in PEER_LN_FIELD:
            call, k, flops["jax-corl no LayerNorm"] = _peer_arm(jaxcorl_bench, algo, without_layer_norm=True)
            variants["jax-corl no LayerNorm"] = (call, k)
        matched = PEER_MATCHED[algo]
        arms = [("smac_jax@8", matched, 8), (f"smac_jax@{scan}", matched, scan)]
        if matched.get("critic_layer_norm"):
            arms.append(("smac_jax@8 no LayerNorm", {**matched, "critic_layer_norm": False}, 8))
        for label, ov, k in arms:
            learner = make_learner(algo, obs_dim, act_dim, ov)
            flops[label] = offline_update_flops(learner, data)
            variants[label] = (offline_call(learner, data, k), k)
        for fn, k in variants.values():  # compile and warm up
            for _ in range(max(2, 200 // k)):
                fn()
            jax.block_until_ready(fn())
        rates = {label: [] for label in variants}
        for _ in range(rounds):
            for label, (fn, k) in variants.items():
                calls = max(1, updates // k)
                t0 = time.perf_counter()
                for _ in range(calls):
                    out = fn()
                jax.block_until_ready(out)
                rates[label].append(calls * k / (time.perf_counter() - t0))
        med = {label: float(np.median(r)) for label, r in rates.items()}
        gflops = {label: med[label] * flops[label] / 1e9 for label in med}
        row = {"updates_per_s": med, "rounds": rates, "settings": matched,
               "mflop_per_update": {label: f / 1e6 for label, f in flops.items()},
               "gflop_per_s": gflops, "share_of_matmul_peak": {lab: g / peak_gflops for lab, g in gflops.items()},
               "ratio_vs_peer": {lab: v / med["jax-corl"] for lab, v in med.items() if lab.startswith("smac_jax")}}
        if "smac_jax@8 no LayerNorm" in med:
            row["layer_norm_cost"] = med["smac_jax@8 no LayerNorm"] / med["smac_jax@8"]
            row["peer_layer_norm_cost"] = med["jax-corl no LayerNorm"] / med["jax-corl"]
        results[algo] = row
        if on_row is not None:
            on_row(results)
        print(f"{algo:<7}" + "  ".join(f"{lab} {v:.1f} ({flops[lab] / 1e6:.0f} MFLOP, "
                                      f"{100 * row['share_of_matmul_peak'][lab]:.0f}% peak)" for lab, v in med.items())
              + "  | ratio " + ", ".join(f"{lab}: {r:.2f}" for lab, r in row["ratio_vs_peer"].items())
              + (f"  | LayerNorm cost ours {row['layer_norm_cost']:.2f}x, peer {row['peer_layer_norm_cost']:.2f}x"
                 if "layer_norm_cost" in row else ""), flush=True)
    return results


def method_rates(data, rounds: int, scan: int, seconds: float) -> dict:
    """Updates/s (median over alternating rounds) of SAC, ACA and SAMG-SAC, 1 seed, each after its
    hand-over: ACA from a SAC+ML state, SAMG-SAC from a SAC state with a C-VAE (at its default
    size, untrained: the update's cost does not depend on the C-VAE's weights)."""
    from smac_jax.samg import confidence, cvae

    key = jax.random.PRNGKey(0)
    sac = make_learner("sac", OBS, ACT)
    sac_state = sac.init(key)
    sacml = make_learner("sacml", OBS, ACT)
    aca = make_learner("aca", OBS, ACT)
    samg = make_learner("samg_sac", OBS, ACT)
    cv = cvae.init_cvae(key, OBS, ACT, samg.config.cvae)
    samg.set_cvae(cv, confidence.fit_dataset_normals(cv, data.obs[:10_000], data.action[:10_000], samg.config.cvae))
    arms = {
        "sac": (sac, sac_state),
        "aca": (aca, jax.jit(lambda s: aca.transfer(key, s, sacml))(sacml.init(key))),
        "samg_sac": (samg, jax.jit(lambda s: samg.transfer(key, s, sac))(sac_state)),
    }
    calls = {name: offline_call(learner, data, scan, state=state) for name, (learner, state) in arms.items()}
    for call in calls.values():
        jax.block_until_ready(call())
    rates = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            rates[name].append(timed(call, seconds / rounds, warmup=False) * scan)
    med = {name: float(np.median(r)) for name, r in rates.items()}
    return {"updates_per_s": med, "rounds": rates,
            "time_vs_sac": {name: med["sac"] / v for name, v in med.items() if name != "sac"}}


def device_env_rate(n_seeds: int, window: int, rounds: int, env_id: str = "Pendulum-v1") -> dict:
    """The online loop on ``env_id`` (SAC at its default sizes, one update per environment step
    per seed, ``window`` steps per dispatch) with the environments on the host (Gymnasium's,
    stepped from inside the program by the pipeline's default host call) against their JAX-native
    port stepped on the device (``online.env="jax"``), timed in alternating rounds; the ratio is
    taken per round and the median round reported, with the extremes."""
    from smac_jax.envs import make_env
    from smac_jax.jax_envs import make_jax_env
    from smac_jax.training.online import DeviceCollector

    jenv = make_jax_env(env_id)
    obs_dim, act_dim = jenv.obs_dim, jenv.act_dim
    learner = make_learner("sac", obs_dim, act_dim)
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    collectors = {"host": OnlineCollector(lambda: make_env(env_id), list(range(n_seeds))),
                  "device": DeviceCollector(jenv, keys)}
    box = {"i": 0}
    for name, c in collectors.items():
        box[name] = unalias(jax.vmap(learner.init)(keys))
        buf = replay.empty_buffer(obs_dim, act_dim, 100_000)
        box[name + "/b"] = unalias(jax.tree.map(lambda x: jnp.stack([x] * n_seeds), buf))
        box[name + "/a"] = make_act_step(learner)(box[name], c.obs, keys, 0)
        box[name + "/loop"] = c.make_loop(learner, 1, None, True)

    def run(name):
        box[name], box[name + "/b"], box[name + "/a"], _ = box[name + "/loop"](
            box[name], box[name + "/b"], box[name + "/a"], None, keys, box["i"], window)
        jax.block_until_ready(box[name + "/a"])
        box["i"] += window

    for name in collectors:  # compile, and fill the buffers past a batch
        run(name)
    rates = {k: [] for k in collectors}
    for _ in range(rounds):
        for name in collectors:
            t0 = time.perf_counter()
            run(name)
            rates[name].append(window / (time.perf_counter() - t0))
    collectors["host"].close()
    r = {k: np.asarray(v) for k, v in rates.items()}
    ratio = r["device"] / r["host"]
    return {"seeds": n_seeds, "window": window, "host_env_steps_per_s": float(np.median(r["host"])),
            "device_env_steps_per_s": float(np.median(r["device"])), "device_over_host": float(np.median(ratio)),
            "device_over_host_min": float(ratio.min()), "device_over_host_max": float(ratio.max()),
            "rounds": [{k: float(v[i]) for k, v in r.items()} for i in range(rounds)]}


def _write_json(out: dict) -> None:
    """The results so far to ``--json`` (if given)."""
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(out, f, indent=2, default=str)


def main(argv):
    del argv
    tuned = tune_host_allocator() if _TUNE_MALLOC.value else False
    logging.set_verbosity(logging.WARNING)
    seconds = _SECONDS.value
    names = _LEARNERS.value or [n for n in available_learners() if n != "base"]
    unknown = [n for n in names if n not in available_learners()]
    if unknown:
        fail(f"--learners: unknown learner(s) {unknown}; available: {', '.join(available_learners())}")
    try:
        seeds = [int(s) for s in _SEEDS.value]
        online_seeds = [int(s) for s in _ONLINE_SEEDS.value]
    except ValueError:
        fail(f"--seeds and --online_seeds take comma-separated integers, got {_SEEDS.value} / {_ONLINE_SEEDS.value}")
    if not seeds or min(seeds) < 1 or (online_seeds and min(online_seeds) < 1):
        fail(f"--seeds / --online_seeds must be integers >= 1, got {_SEEDS.value} / {_ONLINE_SEEDS.value}")
    for name, v in (("seconds", _SECONDS.value), ("windows", _WINDOWS.value), ("scan", _SCAN.value),
                    ("online_rounds", _ONLINE_ROUNDS.value)):
        if v <= 0:
            fail(f"--{name} must be > 0, got {v}")
    if _ONLINE_STEPS.value < 0:
        fail(f"--online_steps must be >= 0, got {_ONLINE_STEPS.value}")
    if _JSON.value and not os.path.isdir(os.path.dirname(os.path.abspath(_JSON.value))):
        fail(f"--json={_JSON.value}: its directory does not exist")
    if _DEVICE_ENV.value:
        try:
            counts = [int(v) for v in _DEVICE_ENV.value]
        except ValueError:
            fail(f"--device_env_seeds takes comma-separated integers, got {_DEVICE_ENV.value}")
        if min(counts) < 1:
            fail(f"--device_env_seeds must be integers >= 1, got {_DEVICE_ENV.value}")
        from smac_jax.jax_envs import check_port

        env_id = _DEVICE_ENV_ID.value
        try:
            check_port(env_id)
        except ValueError as e:
            fail(f"--device_env_id: {e}")
        window = max(_ONLINE_STEPS.value // _ONLINE_ROUNDS.value, 1)
        out = {"device": str(jax.devices()[0]), "jax": jax.__version__, "malloc_tuned": tuned, "env_id": env_id,
               "device_env": []}
        print(f"device {out['device']}; online loop, {env_id}, SAC 256x256, UTD 1, {window} steps per dispatch, "
              f"median of {_ONLINE_ROUNDS.value} alternating rounds (environment steps/s per seed):")
        for n in counts:
            res = device_env_rate(n, window, _ONLINE_ROUNDS.value, env_id)
            out["device_env"].append(res)
            print(f"  {n} seed(s): host {res['host_env_steps_per_s']:.1f}, device {res['device_env_steps_per_s']:.1f}; "
                  f"device / host {res['device_over_host']:.2f} (rounds {res['device_over_host_min']:.2f}-"
                  f"{res['device_over_host_max']:.2f})")
            _write_json(out)
        return
    if _LOOP_COMPILE.value:
        out = {"device": str(jax.devices()[0]), "jax": jax.__version__,
               "loop_compile": loop_compile_time(_LOOP_COMPILE.value)}
        r = out["loop_compile"]
        print(f"device {out['device']}; online loop (SAC 256x256, Hopper-v5, 1 seed), built to first step done, "
              f"median of {_LOOP_COMPILE.value} rounds: compiled {r['median_s']['compiled']:.2f} s, "
              f"reused {r['median_s']['reused']:.2f} s ({r['ratio']:.1f}x)")
        _write_json(out)
        return
    if _PEER.value:
        bad = [a for a in _PEER_ALGOS.value if a not in PEER_MATCHED]
        if bad:
            fail(f"--peer_algos: unknown algorithm(s) {bad}; choose from {list(PEER_MATCHED)}")
        if _PEER_ROUNDS.value < 1 or _PEER_UPDATES.value < 8:
            fail(f"--peer_rounds must be >= 1 and --peer_updates >= 8, got {_PEER_ROUNDS.value} / {_PEER_UPDATES.value}")
        out = {"device": str(jax.devices()[0]), "jax": jax.__version__, "malloc_tuned": tuned,
               "matmul_peak_gflops": matmul_peak(seconds) / 1e9, "rounds": _PEER_ROUNDS.value,
               "updates_per_round": _PEER_UPDATES.value}
        print(f"device {out['device']}; 2048x2048 float32 matmul peak {out['matmul_peak_gflops']:.1f} GFLOP/s; "
              f"updates/s, 1 seed, median of {_PEER_ROUNDS.value} alternating rounds")

        def save(results):
            if _JSON.value:
                with open(_JSON.value, "w") as f:
                    json.dump({**out, "peer": results}, f, indent=2, default=str)

        peer_comparison(_PEER.value, _PEER_ALGOS.value, _PEER_ROUNDS.value, _PEER_UPDATES.value, _SCAN.value,
                        out["matmul_peak_gflops"], on_row=save)
        return
    data = fake_data()
    out = {"device": str(jax.devices()[0]), "jax": jax.__version__, "malloc_tuned": tuned}
    peak = matmul_peak(seconds)
    out["matmul_peak_gflops"] = peak / 1e9
    print(f"device {out['device']}; malloc tuned: {tuned}; 2048x2048 float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    print(f"\n{'learner':<15}{'optim':<7}{'GFLOP/upd':>10}" + "".join(f"{f'upd/s x{s}':>12}" for s in seeds)
          + f"{'GFLOP/s':>10}{'% peak':>8}{'best':>8}{'x SAC':>7}")
    rows = {}
    variants = []
    for name in names:
        if name in ("sac", "smac"):
            variants += [(name, {"optimizer": "adam"}), (name, {"optimizer": "muon"})]
            if name == "smac":  # the score-matching term on the whole batch instead of 64 states
                variants.append((name, {"optimizer": "adam", "sm_batch_size": 0}))
        else:
            variants.append((name, None))
    for name, ov in variants:
        learner = build(name, ov)
        flops = offline_update_flops(learner, data)  # as the offline step runs it (TD3's delayed actor)
        windows = {s: offline_rate(learner, data, s, _SCAN.value, seconds, _WINDOWS.value) for s in seeds}
        rates = {s: float(np.median(w)) for s, w in windows.items()}
        best = max(rates[s] * s * flops for s in seeds)
        top = max(max(w) * s * flops for s, w in windows.items())
        opt = learner.config.optimizer
        label = name + ("(smB=all)" if ov and ov.get("sm_batch_size") == 0 else "")
        key = f"{label}/{opt}"
        sac_t = rates[seeds[0]] if key == "sac/adam" else rows.get("sac/adam", {}).get("updates_per_s", {}).get(seeds[0])
        rel = sac_t / rates[seeds[0]] if sac_t else float("nan")
        rows[key] = {"gflop_per_update": flops / 1e9, "updates_per_s": rates, "gflops": best / 1e9,
                     "fraction_of_peak": best / peak, "fraction_of_peak_best_window": top / peak,
                     "window_rates": windows, "time_vs_sac_adam": rel}
        print(f"{label:<15}{opt:<7}{flops / 1e9:>10.3f}" + "".join(f"{rates[s]:>12.1f}" for s in seeds)
              + f"{best / 1e9:>10.1f}{100 * best / peak:>7.0f}%{100 * top / peak:>7.0f}%{rel:>7.2f}")
    out["offline"] = rows

    if _METHODS.value:
        res = method_rates(data, _METHODS.value, _SCAN.value, seconds * _METHODS.value)
        out["methods_1seed"] = res
        print(f"\nonline updates, 1 seed, median of {_METHODS.value} alternating rounds (updates/s): "
              + ", ".join(f"{n} {v:.1f}" for n, v in res["updates_per_s"].items())
              + "; time vs SAC: " + ", ".join(f"{n} {v:.2f}x" for n, v in res["time_vs_sac"].items()))

    if "smac" in names:
        learner = build("smac")
        cfg = learner.config.score_config
        st = sm.init_score_model(jax.random.PRNGKey(0), OBS, ACT, cfg)
        w = jnp.linspace(0, 1, data.reward.shape[0])
        box = {"s": st}

        def call():
            box["s"], m = sm.train_steps(box["s"], data.obs, data.action, w, jax.random.PRNGKey(0), _SCAN.value, cfg)
            return m

        rate = timed(call, seconds) * _SCAN.value
        out["score_model_steps_per_s"] = rate
        print(f"\nscore model (IDQL eps-net, batch {cfg.batch_size}): {rate:.0f} training steps/s")
        for opt in ("adam", "muon"):
            r_same = rows[f"sac/{opt}"]["updates_per_s"][seeds[0]] / rows[f"smac/{opt}"]["updates_per_s"][seeds[0]]
            print(f"SMAC update / SAC update time, both {opt}: {r_same:.2f}x")
            out[f"smac_over_sac_{opt}"] = r_same
        full = rows["sac/adam"]["updates_per_s"][seeds[0]] / rows["smac(smB=all)/adam"]["updates_per_s"][seeds[0]]
        print(f"SMAC update / SAC update time, adam, score matching on all 256 states: {full:.2f}x")
        out["smac_full_batch_over_sac_adam"] = full

    if _ONLINE_STEPS.value:
        print("\nonline loop, Hopper-v5, SAC, UTD 1, side by side with the scan-fused update "
              f"(median of {_ONLINE_ROUNDS.value} alternating rounds):")
        out["online_hopper"] = []
        for n in (int(s) for s in _ONLINE_SEEDS.value):
            res = online_rate(n, max(_ONLINE_STEPS.value // _ONLINE_ROUNDS.value, 1), _ONLINE_ROUNDS.value)
            out["online_hopper"].append(res)
            print(f"  {n} seed(s): {res['env_steps_per_s']:.1f} env steps/s per seed; pure update "
                  f"{res['pure_update_per_s']:.1f}/s per seed; fraction {100 * res['fraction']:.0f}% "
                  f"(rounds {100 * res['fraction_min']:.0f}-{100 * res['fraction_max']:.0f}%). "
                  f"Through io_callback: {100 * res['io_callback_fraction']:.0f}% (lean / io_callback per round: "
                  f"{res['lean_over_io_callback']:.3f}). One dispatch per env step: {100 * res['per_step_fraction']:.0f}%; the update alone, "
                  f"one per dispatch: {100 * res['one_per_dispatch_fraction']:.0f}%")
            for level, v in res["levels"].items():
                print(f"    {level} level ({v['rounds']} rounds on it, pure update {v['pure_update_per_s']:.1f}/s): "
                      f"fused {100 * v['fraction']:.0f}%, through io_callback {100 * v['io_callback_fraction']:.0f}%, one dispatch per env step {100 * v['per_step_fraction']:.0f}%")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    run_cli(main)
