#!/usr/bin/env bash
# Our tape-free inference engine beside ONNX Runtime (issue 10, targets): quadranet-28 (28x28, 1 channel),
# quadranet-t18 and quadranet-t (224x224, 3 channels), at 1 and 2 threads. Prints one table: batch-1
# p50 latency and batch-32 images/s of both, and whether ours meets the target (p50 <= ORT's, img/s >= ORT's).
#
# The checkpoints are trained for one step (the weights' values do not change the speed): quadranet-28 on
# 16 random 28x28 images, the t models on 16 random 224x224 RGB images, both with 10 classes (for the t
# models the head is 512x10 instead of 512x1000: 0.5 M of their 2.5-4.5 G MACs).
#
# Usage: scripts/inference_vs_onnxruntime.sh [--runs N] [--batch-runs N]   (defaults 50 and 10)
# Needs python3-venv; installs onnx onnxruntime numpy from PyPI into .build/onnx-venv (ONNX_VENV overrides).
# QUADRANET_BIN: a release binary of this checkout (default: swift build -c release --product quadranet).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUNS=50
BATCH_RUNS=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --batch-runs) BATCH_RUNS="$2"; shift 2 ;;
    *) echo "unknown argument $1 (usage: $0 [--runs 1..10000] [--batch-runs 1..10000])" >&2; exit 2 ;;
  esac
done
for value in "$RUNS" "$BATCH_RUNS"; do
  if ! [[ "$value" =~ ^[0-9]+$ ]] || (( value < 1 || value > 10000 )); then
    echo "--runs and --batch-runs must be integers in 1...10000, got $value" >&2
    exit 2
  fi
done

VENV="${ONNX_VENV:-$ROOT/.build/onnx-venv}"
if [[ ! -x "$VENV/bin/python" ]] && ! python3 -m venv "$VENV" >/dev/null 2>&1; then
  echo "SKIPPED: python3 -m venv failed (apt-get install python3-venv)"
  exit 0
fi
if ! "$VENV/bin/python" -c "import onnx, onnxruntime, numpy" 2>/dev/null \
  && ! "$VENV/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy >/dev/null 2>&1; then
  echo "SKIPPED: pip cannot install onnx onnxruntime numpy"
  exit 0
fi
PYTHON="$VENV/bin/python"
if [[ -n "${QUADRANET_BIN:-}" ]]; then
  BIN="$QUADRANET_BIN"
else
  swift build -c release --product quadranet >&2
  BIN="$(swift build -c release --show-bin-path)/quadranet"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Random training data: 28x28x1 (fallback for quadranet-28) and 224x224x3, labels 0-9.
"$PYTHON" - "$WORK" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(0)
for name, shape in (("small", (16, 28, 28)), ("large", (16, 224, 224, 3))):
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    y = (np.arange(shape[0]) % 10).astype(np.uint8)  # labels must be uint8 or float32
    np.savez(f"{sys.argv[1]}/{name}.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
PY

declare -A DATA=([quadranet-28]="$WORK/small.npz" [quadranet-t18]="$WORK/large.npz" [quadranet-t]="$WORK/large.npz")
declare -A RES=([quadranet-28]=28 [quadranet-t18]=224 [quadranet-t]=224)
MODELS=(quadranet-28 quadranet-t18 quadranet-t)
for model in "${MODELS[@]}"; do
  "$BIN" train --model "$model" --dataset "${DATA[$model]}" --epochs 1 --batch-size 16 --out "$WORK/$model" >/dev/null
  "$BIN" export --checkpoint "$WORK/$model" --out "$WORK/$model.onnx" --resolution "${RES[$model]}" >/dev/null
done

for threads in 1 2; do
  for model in "${MODELS[@]}"; do
    "$BIN" bench inference --models "$model" --batch-sizes 1 --runs "$RUNS" --threads "$threads" --no-tape --json \
      --resolution "${RES[$model]}" > "$WORK/ours-$model-$threads-1.json" 2>/dev/null
    "$BIN" bench inference --models "$model" --batch-sizes 32 --runs "$BATCH_RUNS" --threads "$threads" --no-tape --json \
      --resolution "${RES[$model]}" > "$WORK/ours-$model-$threads-32.json" 2>/dev/null
    "$PYTHON" scripts/onnx_bench.py "$WORK/$model.onnx" --threads "$threads" --runs "$RUNS" --batch-runs "$BATCH_RUNS" --warmup 1 \
      --json > "$WORK/ort-$model-$threads.json"
  done
done

"$PYTHON" - "$WORK" "${MODELS[@]}" <<'PY'
import json, sys
work, models = sys.argv[1], sys.argv[2:]
print("model          res thr | batch-1 p50 ms: ours    ORT  | batch-32 img/s: ours     ORT  | target")
met = total = 0
for threads in (1, 2):
    for model in models:
        ours1 = json.load(open(f"{work}/ours-{model}-{threads}-1.json"))[0]["engine"]
        ours32 = json.load(open(f"{work}/ours-{model}-{threads}-32.json"))[0]["engine"]
        ort = {r["batchSize"]: r["onnxruntime"] for r in json.load(open(f"{work}/ort-{model}-{threads}.json"))["results"]}
        latency_ok = ours1["p50Milliseconds"] <= ort[1]["p50Milliseconds"]
        throughput_ok = ours32["imagesPerSecond"] >= ort[32]["imagesPerSecond"]
        met += latency_ok + throughput_ok
        total += 2
        resolution = json.load(open(f"{work}/ours-{model}-{threads}-1.json"))[0]["resolution"]
        print(f"{model:14s} {resolution:3d} {threads:3d} | {ours1['p50Milliseconds']:19.3f} {ort[1]['p50Milliseconds']:7.3f}"
              f" | {ours32['imagesPerSecond']:20.1f} {ort[32]['imagesPerSecond']:8.1f}"
              f" | p50 {'met' if latency_ok else 'MISSED'}, img/s {'met' if throughput_ok else 'MISSED'}")
print(f"targets met: {met}/{total}")
PY
