#!/usr/bin/env bash
# The library's throughput benchmarks in one command, for a machine with an accelerator (they run
# on a CPU too): every result is written under OUT_DIR as JSON, with one log of everything printed.
#
#     bash experiments/accelerator_benchmarks.sh OUT_DIR
#
# Parts, in this order, each stopped after its time limit (seconds, environment variables) so that
# the later parts still run; a part that fails or times out is reported and the others go on:
#   peer       (PEER_S, 200; PEER_ROUNDS 3, PEER_UPDATES 800)  only with PEER_HARNESS and JAXCORL_DIR set: TD3+BC, IQL, AWAC and CQL
#                             against JAX-CORL at the peer's sizes (docs/README.md, "Against JAX-CORL")
#   landscape  (LANDSCAPE_S, 100)  an 11x11 Hopper-v5 plane, batched against point by point, physics
#                             threads one per 16 environments up to the CPU count (docs/analysis.md)
#   offline    (OFFLINE_S, 100)  offline learners' updates/s and FLOP rate at 1, 8 and 32 vmapped seeds
#   sweep      (SWEEP_S, 60)  a vmap_sweep of 4 settings x 3 seeds against the settings one by one
#   device_env (DEVICE_ENV_S, 40)  the online loop on Pendulum-v1 with Gymnasium's environments on the host
#                             against their JAX-native port on the device, 1, 64 and 512 seeds (needs gymnax)
#   device_mjx (DEVICE_MJX_S, 70)  the same on Hopper-v5, its port stepped by MJX, 64 and 512 seeds
# The defaults fit one 10-minute command. PYTHON picks the interpreter (default: python3).
set -uo pipefail
OUT=${1:?usage: bash experiments/accelerator_benchmarks.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
PY=${PYTHON:-python3}
LOG="$OUT/benchmarks.log"
export PYTHONUNBUFFERED=1

part() {  # part NAME LIMIT_S ARGS...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit} s): $PY $*" | tee -a "$LOG"
  timeout "$limit" "$PY" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

{ date -u +"%Y-%m-%dT%H:%M:%SZ"; "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"; nproc; } >>"$LOG" 2>&1
if [ -n "${PEER_HARNESS:-}" ] && [ -n "${JAXCORL_DIR:-}" ]; then
  part peer "${PEER_S:-200}" experiments/benchmark.py --peer_harness="$PEER_HARNESS" \
    --peer_algos=td3bc,iql,awac,cql --peer_rounds=${PEER_ROUNDS:-3} --peer_updates=${PEER_UPDATES:-800} --json="$OUT/peer.json"
else
  echo "== peer: skipped (set PEER_HARNESS and JAXCORL_DIR)" | tee -a "$LOG"
fi
part landscape "${LANDSCAPE_S:-100}" experiments/landscape_benchmark.py --env=Hopper-v5 --grid=11 --episodes=5 \
  --no_termination --out="$OUT/landscape.jsonl"
part offline "${OFFLINE_S:-100}" experiments/benchmark.py --learners=sac,td3bc,cql,iql,awac --seeds=1,8,32 \
  --seconds=1 --windows=3 --online_steps=0 --json="$OUT/offline.json"
part sweep "${SWEEP_S:-60}" experiments/vmap_sweep_benchmark.py --json="$OUT/sweep.json"
part device_env "${DEVICE_ENV_S:-40}" experiments/benchmark.py --device_env_seeds=1,64,512 --online_steps=400 \
  --online_rounds=4 --json="$OUT/device_env.json"
part device_mjx "${DEVICE_MJX_S:-70}" experiments/benchmark.py --device_env_seeds=64,512 --device_env_id=Hopper-v5 \
  --online_steps=400 --online_rounds=4 --json="$OUT/device_mjx.json"
tail -n 60 "$LOG"
