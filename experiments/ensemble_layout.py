"""The critic ensemble's two layouts side by side (not part of CI): each learner's offline update
built twice, differing only in ``ensemble_layout`` ("batched": one batched matrix product per layer
for all members; "separate": the members applied one by one), timed in alternating rounds in one
process at the peer-matched sizes of ``bench_data.PEER_MATCHED``, 8 updates per dispatch.

    python experiments/ensemble_layout.py --runs=td3bc:1:6:800,cql:1:5:200,td3bc:8:4:160 --json=layout.json

Each run is ``learner:seeds:rounds:updates[:key=value...]`` (updates per seed, per layout and
round; optional hyperparameters, e.g. ``sac:1:4:240:num_critics=10``). With
``--peer_harness`` the data is the peer harness's synthetic dataset (as in ``benchmark.py``'s
peer mode), otherwise ``bench_data.fake_data``.
"""
from __future__ import annotations

import ast
import json
import os
import sys
import time

import jax
import numpy as np
from absl import flags, logging

from smac_jax.cli import fail, run_cli
from smac_jax.learners import available_learners
from smac_jax.runtime import tune_host_allocator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import PEER_MATCHED, build, offline_call, offline_data  # noqa: E402

_RUNS = flags.DEFINE_list("runs", ["td3bc:1:6:800", "cql:1:5:200"],
                          "learner:seeds:rounds:updates[:key=value...], one per run.")
_PEER = flags.DEFINE_string("peer_harness", None, "Directory of a JAX-CORL timing harness: use its synthetic data.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
LAYOUTS = ("batched", "separate")


def parse_run(spec: str) -> tuple[str, int, int, int, dict]:
    parts = spec.split(":")
    ok = len(parts) >= 4 and parts[0] in available_learners() and all(p.isdigit() and int(p) > 0 for p in parts[1:4])
    extra = {}
    for kv in parts[4:]:
        key, eq, value = kv.partition("=")
        try:
            extra[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            ok = False
        ok = ok and bool(eq and key)
    if not ok:
        fail(f"--runs: {spec!r} is not learner:seeds:rounds:updates[:key=value...] with a known learner and "
             "positive numbers")
    return parts[0], int(parts[1]), int(parts[2]), int(parts[3]), extra


def compare(algo: str, seeds: int, rounds: int, updates: int, extra: dict, data) -> dict:
    """Updates/s per seed of both layouts, alternating which goes first in each round."""
    calls = {}
    for layout in LAYOUTS:
        overrides = {**PEER_MATCHED.get(algo, {"hidden_dims": (256, 256)}), **extra, "ensemble_layout": layout}
        learner = build(algo, overrides)
        call = offline_call(learner, data, 8, seeds)
        for _ in range(3):  # compile and warm up
            jax.block_until_ready(call())
        calls[layout] = call
    rates = {layout: [] for layout in LAYOUTS}
    n = max(1, updates // 8)
    for r in range(rounds):
        for layout in (LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]):
            t0 = time.perf_counter()
            for _ in range(n):
                out = calls[layout]()
            jax.block_until_ready(out)
            rates[layout].append(8 * n / (time.perf_counter() - t0))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {"updates_per_s_per_seed": med, "rounds": rates, "ratio": med["separate"] / med["batched"],
            "separate_faster_rounds": sum(s > b for s, b in zip(rates["separate"], rates["batched"]))}


def main(argv):
    del argv
    tune_host_allocator()
    logging.set_verbosity(logging.WARNING)
    runs = [parse_run(s) for s in _RUNS.value]
    data = offline_data(_PEER.value)
    out = {"device": str(jax.devices()[0]), "jax": jax.__version__, "runs": {}}
    print(f"device {out['device']}; updates/s per seed, 8 per dispatch, median over alternating rounds")
    for spec, (algo, seeds, rounds, updates, extra) in zip(_RUNS.value, runs):
        row = compare(algo, seeds, rounds, updates, extra, data)
        out["runs"][spec] = row
        med = row["updates_per_s_per_seed"]
        label = f"{algo:<7}{seeds} seed(s)" + "".join(f", {k}={v}" for k, v in extra.items())
        print(f"{label}: batched {med['batched']:.2f}, separate {med['separate']:.2f}; separate / batched "
              f"{row['ratio']:.3f}, faster in {row['separate_faster_rounds']}/{rounds} rounds", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
