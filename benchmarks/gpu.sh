#!/usr/bin/env bash
# The GPU benchmark sweep: training throughput (ours vs normflows), compile time and step cost vs depth,
# log-det throughput (ours vs naive distrax vs PyTorch), scaling, memory vs depth.
#
# Usage, from the repository root of a checkout on a machine with a GPU and the project installed
# (`pip install -e ".[benchmarks]"` plus a CUDA build of jax, e.g. `pip install "jax[cuda12]"`):
#     bash benchmarks/gpu.sh
# Environment (all optional):
#     PYTHON   the interpreter that has jcnf installed (default: python3)
#     OUT      the folder to write into (default: a new temporary folder, printed at the end)
#     TRAIN_S, COMPILE_S, LOGDET_S, SCALING_S, MEMORY_S   seconds allowed per piece (defaults 300, 200,
#              260, 100, 170); 0 skips a piece
# Writes into "$OUT" (8 files): train_throughput_gpu.json, compile_time_gpu.json, logdet_throughput_gpu.json,
# scaling_gpu.json, scaling_gpu.png, memory_depth_gpu.json, benchmarks.log, nvidia_smi.txt. Each piece runs
# under its own `timeout` and rewrites its JSON after each measurement, so a piece cut short keeps what it
# measured. About 17 minutes at most in all with the default limits.
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
  if [ "$seconds" = 0 ]; then say "skip $name"; return; fi
  say "start $name (limit ${seconds}s)"
  timeout -k 10 "$seconds" "$@" >> "$LOG" 2>&1
  say "end $name: exit $?"
}

tiny=(); [ "${JCNF_BENCH_TINY:-}" = 1 ] && tiny=(--quick)
run_piece train_throughput "${TRAIN_S:-300}" "$PYTHON" -m benchmarks.train_throughput "${tiny[@]}" \
  --json "$OUT/train_throughput_gpu.json"
depths=(--depths 8,32 --unrolled-depths 8); [ "${JCNF_BENCH_TINY:-}" = 1 ] && depths=(--quick --depths 2,4 --unrolled-depths 2)
run_piece compile_time "${COMPILE_S:-200}" "$PYTHON" -m benchmarks.compile_time "${depths[@]}" \
  --json "$OUT/compile_time_gpu.json"
run_piece logdet_throughput "${LOGDET_S:-260}" "$PYTHON" -m benchmarks.logdet_throughput --json "$OUT/logdet_throughput_gpu.json"
run_piece scaling "${SCALING_S:-100}" "$PYTHON" -m benchmarks.scaling --full --json "$OUT/scaling_gpu.json" --png "$OUT/scaling_gpu.png"
run_piece memory_depth "${MEMORY_S:-170}" "$PYTHON" -m benchmarks.memory_depth --full --worker-timeout 80 \
  --json "$OUT/memory_depth_gpu.json"
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
grep -v -i -e warning -e "^\[" "$LOG" | tail -60
