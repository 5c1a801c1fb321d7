"""Where an offline update's time goes: the compiled program's operations, timed by JAX's profiler
(not part of CI).

For each learner, builds the offline step as the training loop runs it (1 seed, ``--scan`` updates
per dispatch, the synthetic obs-11 / act-3 data of ``bench_data.py``, the peer-matched network sizes
of ``bench_data.PEER_MATCHED`` where the learner has them), times it, then traces ``--updates``
updates with ``jax.profiler`` and attributes every executed operation of the compiled program to a
category through the operation's name in the program's HLO (``jax.named_scope`` names and Flax
module paths end up there):

* ``matmul``: dots, and fusions built around a dot (XLA CPU's library fusions);
* ``layernorm``: operations of a ``ln_*`` / ``LayerNorm`` module; ``activation``: relu / tanh and
  their gradients' selects; ``optimizer`` and ``target_update`` (this library names them with
  ``jax.named_scope``); ``minibatch`` (sampling and gathering the batch); ``random_numbers``;
  ``copy``; ``other``.

Reported per update: the wall time untraced and traced (the profiler adds a little per operation),
the operations' summed execution time per category (summed over the worker threads, so it can
exceed the wall time when operations overlap), the wall time during which at least one matrix
product ran, and the **matmul-only ceiling**: traced wall / that matmul time, the speed-up if every
other operation took no time and the matrix products kept their speed.

With ``--peer_harness`` (see ``benchmark.py``; needs JAX-CORL's files), the peer's
``update_n_times`` is profiled the same way, and each learner also reports the **ceiling against the
peer**: the peer's traced wall time per update over this library's matmul time per update. A
ratio above that ceiling cannot be reached without changing the matrix products themselves.

    python experiments/profile_update.py --algos=td3bc,cql
    JAXCORL_DIR=path/to/JAX-CORL python experiments/profile_update.py --algos=td3bc,cql \\
        --peer_harness=path/to/harness --json=profile.json
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import tempfile
import time

import jax
import numpy as np
from absl import flags, logging

from smac_jax.cli import fail, run_cli
from smac_jax.learners import available_learners
from smac_jax.runtime import tune_host_allocator
from smac_jax.training.steps import make_offline_step, unalias

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import PEER_MATCHED, build, offline_data  # noqa: E402

_ALGOS = flags.DEFINE_list("algos", ["td3bc", "cql"], "Offline learners to profile.")
_SCAN = flags.DEFINE_integer("scan", 8, "Updates fused per dispatch (8 = JAX-CORL's default).")
_UPDATES = flags.DEFINE_integer("updates", 200, "Updates timed and traced per program (rounded up to whole dispatches).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds over the programs (medians are reported).")
_NO_LN = flags.DEFINE_bool("layer_norm_arm", True, "For a learner with LayerNorm critics, also profile it without.")
_PEER = flags.DEFINE_string("peer_harness", None, "Directory of a JAX-CORL timing harness (benchmark.py): also "
                            "profile the peer's program.")
_TOP = flags.DEFINE_integer("top", 0, "Also print this many most expensive operations per program.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")

CATEGORIES = ("matmul", "layernorm", "activation", "optimizer", "target_update", "minibatch",
              "random_numbers", "copy", "other")
#: Operations that only contain others (their time is that of the operations they run).
CONTAINERS = ("while", "call", "conditional")
_RANDOM = ("random", "threefry", "_normal", "_uniform", "_randint", "erf_inv", "rng")


def hlo_ops(hlo_text: str) -> tuple[str, dict[str, dict]]:
    """The module name and, per instruction name, its opcode, ``op_name`` metadata and whether it
    is (or fuses) a matrix product, from a compiled program's HLO text."""
    module = re.search(r"^HloModule (\S+?),", hlo_text, re.M)
    computations, current = {}, None
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?(\S+) .*\{$", line)
        if head:
            current = computations.setdefault(head.group(1), [])
        elif current is not None:
            current.append(line)
    has_dot = {name: any(re.search(r" (dot|convolution)\(", l) for l in lines) for name, lines in computations.items()}
    ops = {}
    for lines in computations.values():
        for line in lines:
            m = re.match(r"\s*(?:ROOT )?%(\S+) = (.*)", line)
            if not m:
                continue
            name, rest = m.groups()
            if rest.startswith("("):  # a tuple type: skip to its closing parenthesis
                depth = 0
                for i, ch in enumerate(rest):
                    depth += {"(": 1, ")": -1}.get(ch, 0)
                    if depth == 0:
                        break
                rest = rest[i + 1:]
            op = re.match(r"\S*\s+([\w-]+)\((.*)", rest)  # "[shape] opcode(operands...": the shape, if left
            if not op:
                continue
            opcode, rest = op.groups()
            op_name = re.search(r'op_name="([^"]*)"', rest)
            called = re.search(r"calls=%([^,\s)]+)", rest)
            ops[name] = {"opcode": opcode, "op_name": op_name.group(1) if op_name else "",
                         "matmul": opcode in ("dot", "convolution") or bool(called and has_dot.get(called.group(1)))}
    return (module.group(1) if module else ""), ops


def categorise(name: str, op: dict) -> str | None:
    """The category of one executed operation (None for containers such as loops)."""
    opcode, path = op["opcode"], op["op_name"]
    if opcode in CONTAINERS:
        return None
    if op["matmul"]:
        return "matmul"
    if "/ln_" in path or "LayerNorm" in path:
        return "layernorm"
    if "optimizer" in path:
        return "optimizer"
    if "target_update" in path:
        return "target_update"
    if "minibatch" in path or opcode == "gather" or "gather" in name:
        return "minibatch"
    if any(r in path for r in _RANDOM):
        return "random_numbers"
    if "relu" in path or "tanh" in path or path.endswith("/select_n"):
        return "activation"
    if opcode == "copy" or name.startswith("copy"):
        return "copy"
    return "other"


def _union(intervals) -> float:
    total, cur = 0.0, None
    for a, b in sorted(intervals):
        if cur is None or a > cur[1]:
            total += 0.0 if cur is None else cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    return total + (0.0 if cur is None else cur[1] - cur[0])


def profile_program(call, per_call: int, updates: int, hlo_text: str, top: int = 0) -> dict:
    """Time ``call`` (one dispatch of ``per_call`` updates) untraced and traced over ``updates``
    updates, and break the traced operations of the program ``hlo_text`` down by category."""
    module, ops = hlo_ops(hlo_text)
    calls = max(1, -(-updates // per_call))
    n = calls * per_call
    for _ in range(3):
        jax.block_until_ready(call())
    t0 = time.perf_counter()
    for _ in range(calls):
        out = call()
    jax.block_until_ready(out)
    wall = (time.perf_counter() - t0) / n
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            t0 = time.perf_counter()
            for _ in range(calls):
                out = call()
            jax.block_until_ready(out)
            traced = (time.perf_counter() - t0) / n
        files = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
        if not files:
            fail("jax.profiler wrote no trace; this JAX build cannot profile host programs")
        profile = jax.profiler.ProfileData.from_file(files[0])
    busy = {c: 0.0 for c in CATEGORIES}
    per_op: dict[str, float] = {}
    matmul_iv, any_iv, unknown = [], [], 0
    for plane in profile.planes:
        for line in plane.lines:
            for ev in line.events:
                stats = dict(ev.stats) if ev.stats else {}
                if stats.get("hlo_module") != module:
                    continue
                name = stats.get("hlo_op", ev.name)
                op = ops.get(name)
                if op is None:
                    unknown += 1
                    continue
                cat = categorise(name, op)
                if cat is None:
                    continue
                iv = (ev.start_ns, ev.start_ns + ev.duration_ns)
                busy[cat] += ev.duration_ns
                per_op[name] = per_op.get(name, 0.0) + ev.duration_ns
                any_iv.append(iv)
                if cat == "matmul":
                    matmul_iv.append(iv)
    if not any_iv:
        fail(f"the trace holds no operation of the program {module!r}; nothing to attribute")
    ms = lambda ns: ns / n / 1e6  # noqa: E731  per update, in ms
    op_total = sum(busy.values())
    matmul_wall = ms(_union(matmul_iv))
    out = {
        "module": module, "updates": n, "wall_ms": wall * 1e3, "traced_wall_ms": traced * 1e3,
        "op_ms": {c: ms(v) for c, v in busy.items()},
        "op_share": {c: v / op_total for c, v in busy.items()},
        "any_op_wall_ms": ms(_union(any_iv)), "matmul_wall_ms": matmul_wall,
        "matmul_share_of_wall": matmul_wall / (traced * 1e3),
        "matmul_only_ceiling": traced * 1e3 / matmul_wall if matmul_wall else float("inf"),
        "unattributed_events": unknown,
    }
    if top:
        out["top_ops"] = [{"op": k, "ms": ms(v), "category": categorise(k, ops[k]), "op_name": ops[k]["op_name"]}
                          for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])[:top]]
    return out


def ours(algo: str, overrides: dict, data, scan: int):
    """``(call, hlo_text)`` for this library's offline step, 1 seed, ``scan`` updates per dispatch."""
    learner = build(algo, overrides)
    keys = jax.random.split(jax.random.PRNGKey(0), 1)
    states = unalias(jax.vmap(learner.init)(keys))
    step = make_offline_step(learner, scan)
    hlo = step.lower(states, data, keys, 0).compile().as_text()
    box = {"s": states, "i": 0}

    def call():
        box["s"], _ = step(box["s"], data, keys, box["i"])
        box["i"] += scan
        return box["s"]

    return call, hlo


def peer(harness: str, algo: str):
    """``(call, per_call, hlo_text)`` for JAX-CORL's jitted ``update_n_times``."""
    sys.path.insert(0, os.path.abspath(harness))
    try:
        import jaxcorl_bench
    except ImportError as e:
        fail(f"--peer_harness={harness}: cannot import the harness ({e})")
    _m, config, dataset, state, update, rng, *_ = jaxcorl_bench.setup(algo, None)
    hlo = update.lower(state, dataset, rng, config).compile().as_text()
    box = {"s": state, "rng": rng}

    def call():
        box["rng"], key = jax.random.split(box["rng"])
        box["s"], _ = update(box["s"], dataset, key, config)
        return box["s"]

    return call, config.n_jitted_updates, hlo


def median_profile(rounds: list[dict]) -> dict:
    """Per-field medians over rounds (the most expensive operations are the first round's); the
    rounds themselves are kept under ``"rounds"``."""
    med = lambda key, sub=None: float(np.median([r[key] if sub is None else r[key][sub] for r in rounds]))  # noqa: E731
    out = {k: med(k) for k, v in rounds[0].items() if isinstance(v, (int, float))}
    for k in ("op_ms", "op_share"):
        out[k] = {c: med(k, c) for c in CATEGORIES}
    out["module"] = rounds[0]["module"]
    if "top_ops" in rounds[0]:
        out["top_ops"] = rounds[0]["top_ops"]
    out["rounds"] = rounds
    return out


def _print(label: str, r: dict) -> None:
    cats = "  ".join(f"{c} {r['op_ms'][c]:.2f}" for c in CATEGORIES if r["op_ms"][c] >= 0.005)
    print(f"  {label:<26} wall {r['wall_ms']:7.2f} ms/update (traced {r['traced_wall_ms']:.2f}); a matmul runs "
          f"{r['matmul_wall_ms']:.2f} ms ({100 * r['matmul_share_of_wall']:.0f}%); matmul-only ceiling "
          f"{r['matmul_only_ceiling']:.2f}x", flush=True)
    print(f"  {'':<26} op time ms/update: {cats}", flush=True)
    if "ceiling_vs_peer" in r:
        print(f"  {'':<26} against the peer: {r['ratio_vs_peer']:.2f}x now ({r['ratio_vs_peer_traced']:.2f}x traced), "
              f"at most {r['ceiling_vs_peer']:.2f}x with every operation but the matrix products free", flush=True)
    for t in r.get("top_ops", []):
        print(f"  {'':<28}{t['ms']:7.3f} ms  {t['category']:<14} {t['op']:<28} {t['op_name'][-70:]}")


def main(argv):
    del argv
    tune_host_allocator()
    logging.set_verbosity(logging.WARNING)
    unknown = [a for a in _ALGOS.value if a not in available_learners()]
    if unknown:
        fail(f"--algos: unknown learner(s) {unknown}; available: {', '.join(available_learners())}")
    if _SCAN.value < 1 or _UPDATES.value < 1 or _ROUNDS.value < 1:
        fail(f"--scan, --updates and --rounds must be >= 1, got {_SCAN.value} / {_UPDATES.value} / {_ROUNDS.value}")
    if _PEER.value:
        missing = [a for a in _ALGOS.value if a not in PEER_MATCHED]
        if missing:
            fail(f"--peer_harness: the peer has no program for {missing}; choose from {list(PEER_MATCHED)}")
    data = offline_data(_PEER.value)
    results = {"device": str(jax.devices()[0]), "jax": jax.__version__, "scan": _SCAN.value,
               "rounds": _ROUNDS.value, "algos": {}}
    print(f"device {results['device']}; 1 seed, {_SCAN.value} updates per dispatch; times per update, "
          f"median of {_ROUNDS.value} alternating rounds")
    for algo in _ALGOS.value:
        settings = PEER_MATCHED.get(algo, {"hidden_dims": (256, 256)})
        programs = {}
        if _PEER.value:
            call, per_call, hlo = peer(_PEER.value, algo)
            programs["jax-corl"] = (call, per_call, hlo)
        arms = [("smac_jax", settings)]
        if _NO_LN.value and settings.get("critic_layer_norm"):
            arms.append(("smac_jax no LayerNorm", {**settings, "critic_layer_norm": False}))
        for label, ov in arms:
            call, hlo = ours(algo, ov, data, _SCAN.value)
            programs[label] = (call, _SCAN.value, hlo)
        print(f"{algo} {settings}", flush=True)
        rounds = {label: [] for label in programs}
        for _ in range(_ROUNDS.value):  # alternating: this machine's speed drifts between levels
            for label, (call, per_call, hlo) in programs.items():
                rounds[label].append(profile_program(call, per_call, _UPDATES.value, hlo, _TOP.value))
        row = {"settings": settings}
        for label, rs in rounds.items():
            r = median_profile(rs)
            if "jax-corl" in rounds and label != "jax-corl":
                peer_rs = rounds["jax-corl"]
                r["ceiling_vs_peer"] = float(np.median([p["traced_wall_ms"] / o["matmul_wall_ms"] for p, o in zip(peer_rs, rs)]))
                r["ratio_vs_peer_traced"] = float(np.median([p["traced_wall_ms"] / o["traced_wall_ms"] for p, o in zip(peer_rs, rs)]))
                r["ratio_vs_peer"] = float(np.median([p["wall_ms"] / o["wall_ms"] for p, o in zip(peer_rs, rs)]))
            row[label] = r
            _print(label, r)
        results["algos"][algo] = row
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
