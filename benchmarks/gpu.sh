#!/usr/bin/env bash
# The GPU benchmark run: throughput (ours vs naive distrax vs PyTorch), scaling, memory vs depth.
#
# Run from the repository root on the device machine, with .whl/ carried (distrax and its
# dependencies as wheels; see /work/shared/device/README.md):
#     bash benchmarks/gpu.sh
# Writes into "$OUT" (7 files): logdet_throughput_gpu.json, train_throughput_gpu.json, scaling_gpu.json, scaling_gpu.png,
# memory_depth_gpu.json, gpu_run.log, nvidia_smi.txt. Each piece runs under its own `timeout`, and
# every benchmark rewrites its JSON after each measurement, so a piece cut short keeps what it
# measured. About 9 minutes at most in all: logdet 260 s, scaling 100 s, memory 170 s.
# Shorter budgets: LOGDET_S=200 SCALING_S=60 MEMORY_S=120 bash benchmarks/gpu.sh (seconds per piece).
# Dry run on a CPU: JCNF_BENCH_TINY=1 PYTHON=/path/to/python bash benchmarks/gpu.sh
set -u
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
LOG="$OUT/gpu_run.log"
mkdir -p "$OUT"
began=$(date +%s)
say() { echo "[$(( $(date +%s) - began ))s] $*" | tee -a "$LOG"; }

# distrax and tfp are absent on the device machine: install the carried wheels beside the project.
if ! "$PYTHON" -c "import distrax" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
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
run_piece train_throughput "${TRAIN_S:-60}" "$PYTHON" -m benchmarks.train_throughput --json "$OUT/train_throughput_gpu.json"
run_piece scaling "${SCALING_S:-100}" "$PYTHON" -m benchmarks.scaling --full --json "$OUT/scaling_gpu.json" --png "$OUT/scaling_gpu.png"
run_piece memory_depth "${MEMORY_S:-170}" "$PYTHON" -m benchmarks.memory_depth --full --worker-timeout 80 \
  --json "$OUT/memory_depth_gpu.json"
say "done; files: $(ls "$OUT" | tr '\n' ' ')"
grep -v -i -e warning -e "^\[" "$LOG" | tail -60
