#!/usr/bin/env bash
# The GPU benchmark sweep: throughput (ours vs naive distrax vs PyTorch), scaling, memory vs depth.
#
# Usage, from the repository root of a checkout on a machine with a GPU and the project installed
# (`pip install -e ".[benchmarks]"` plus a CUDA build of jax, e.g. `pip install "jax[cuda12]"`):
#     bash benchmarks/gpu.sh
# Environment (all optional):
#     PYTHON   the interpreter that has jcnf installed (default: python3)
#     OUT      the folder to write into (default: a new temporary folder, printed at the end)
#     LOGDET_S, TRAIN_S, SCALING_S, MEMORY_S   seconds allowed per piece (defaults 260, 60, 100, 170)
# Writes into "$OUT" (7 files): logdet_throughput_gpu.json, train_throughput_gpu.json, scaling_gpu.json,
# scaling_gpu.png, memory_depth_gpu.json, benchmarks.log, nvidia_smi.txt. Each piece runs under its own
# `timeout`; logdet_throughput, scaling and memory_depth rewrite their JSON after each measurement, so a
# piece cut short keeps what it measured (train_throughput writes its JSON at the end). About 10 minutes
# at most in all with the default limits.
# Dry run on a CPU: JCNF_BENCH_TINY=1 bash benchmarks/gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
LOG="$OUT/benchmarks.log"
mkdir -p "$OUT"
began=$(date +%s)
say() { echo "[$(( $(date +%s) - began ))s] $*" | tee -a "$LOG"; }

if ! "$PYTHON" -c "import jcnf" 2>/dev/null; then
  echo "jcnf is not importable with $PYTHON: install the project first (pip install -e '.[benchmarks]')" >&2
  exit 1
fi
# The benchmarks are modules of this checkout (python -m benchmarks.*).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# JAX must not take 75% of the GPU up front: the PyTorch peer shares the device, and the memory
# benchmark reads the allocator's peak.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export TF_CPP_MIN_LOG_LEVEL=2
(nvidia-smi 2>&1 || echo "no nvidia-smi") > "$OUT/nvidia_smi.txt"
say "python: $("$PYTHON" -c 'import jax, sys; print(sys.version.split()[0], "jax", jax.__version__, jax.devices())' 2>&1)"

run_piece() {  # name, seconds, command...
  local name=$1 seconds=$2; shift 2
  say "start $name (limit ${seconds}s)"
  timeout -k 10 "$seconds" "$@" >> "$LOG" 2>&1
  say "end $name: exit $?"
}

run_piece logdet_throughput "${LOGDET_S:-260}" "$PYTHON" -m benchmarks.logdet_throughput --json "$OUT/logdet_throughput_gpu.json"
# train_throughput has no tiny size of its own: its --quick models stand in for a dry run.
train_size=(); [ "${JCNF_BENCH_TINY:-}" = 1 ] && train_size=(--quick)
run_piece train_throughput "${TRAIN_S:-60}" "$PYTHON" -m benchmarks.train_throughput "${train_size[@]}" \
  --json "$OUT/train_throughput_gpu.json"
run_piece scaling "${SCALING_S:-100}" "$PYTHON" -m benchmarks.scaling --full --json "$OUT/scaling_gpu.json" --png "$OUT/scaling_gpu.png"
run_piece memory_depth "${MEMORY_S:-170}" "$PYTHON" -m benchmarks.memory_depth --full --worker-timeout 80 \
  --json "$OUT/memory_depth_gpu.json"
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
grep -v -i -e warning -e "^\[" "$LOG" | tail -60
