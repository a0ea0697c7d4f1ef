#!/usr/bin/env bash
# ONNX export check (issue 10): trains tiny checkpoints of every family on the embedded digits
# (one epoch each), exports them, and compares ONNX Runtime with `quadranet predict` on 400 digit
# images (scripts/onnx_check.py: onnx.checker full check, max |delta| <= 1e-4 * max|logit|, identical
# argmax). Then the same check on 1,000 Fashion-MNIST test images for quadranet-28, hornet-28 and
# convnext-28 trained briefly (one epoch on 256 training images: 4 steps) when the Debian package
# dataset-fashion-mnist is installed ("SKIPPED fashion-mnist: ..." otherwise). About 3-4 minutes on two
# cores after the release build. Prints "SKIPPED: <reason>" and exits 0 when Python packages cannot be
# installed (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${ONNX_VENV:-$ROOT/.build/onnx-venv}"

if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
  echo "SKIPPED: python3 -m venv failed (install python3-venv)"
  exit 0
fi
if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy >/dev/null 2>&1; then
  echo "SKIPPED: pip cannot install onnx onnxruntime numpy"
  exit 0
fi
PYTHON="$VENV/bin/python"

# QUADRANET_BIN: a binary of this checkout already built (CI passes the one `swift test -c release` built).
if [[ -n "${QUADRANET_BIN:-}" ]]; then
  BIN="$QUADRANET_BIN"
else
  swift build -c release --product quadranet
  BIN="$(swift build -c release --show-bin-path)/quadranet"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 400 raw digit images (values 0-16) from the embedded data, as uint8 [N, 8, 8].
"$PYTHON" - "$ROOT/Sources/QuadraData/Resources/digits.csv.gz" "$WORK/digits.npy" <<'PY'
import gzip, sys
import numpy as np
rows = [line.split(",") for line in gzip.open(sys.argv[1], "rt").read().split()]
pixels = np.array([[int(v) for v in row[:64]] for row in rows[:400]], dtype=np.uint8)
np.save(sys.argv[2], pixels.reshape(-1, 8, 8))
PY

# Small configs of the other families, and a hybrid (one mixer per stage) with an overlapping stem.
cat > "$WORK/hornet.json" <<'JSON'
{"name": "hornet-digits", "inputChannels": 1, "classCount": 10, "stemPatchSize": 2, "depths": [1, 1],
 "widths": [16, 32], "mixers": [{"gnConv": {"order": 2, "scale": 0.3333333}}, {"gnConv": {"order": 3, "scale": 0.3333333}}],
 "mlpRatio": 2, "layerScaleInit": 0.1, "dropPathRate": 0}
JSON
cat > "$WORK/convnext.json" <<'JSON'
{"name": "convnext-digits", "inputChannels": 1, "classCount": 10, "stemPatchSize": 2, "depths": [1, 1],
 "widths": [16, 32], "mixers": [{"depthwise": {"kernelSize": 3}}, {"depthwise": {"kernelSize": 3}}],
 "mlpRatio": 2, "layerScaleInit": 0.1, "dropPathRate": 0}
JSON
cat > "$WORK/hybrid.json" <<'JSON'
{"name": "hybrid-digits", "inputChannels": 1, "classCount": 10, "stemPatchSize": 2, "stemKernelSize": 4,
 "depths": [1, 1, 1], "widths": [16, 32, 64],
 "mixers": [{"quadratic": {"kernelSize": 3}}, {"gnConv": {"order": 2, "scale": 0.3333333}}, {"depthwise": {"kernelSize": 3}}],
 "mlpRatio": 2, "layerScaleInit": 0.1, "dropPathRate": 0}
JSON

failed=0
for model in quadranet-digits hornet convnext hybrid; do
  if [[ "$model" == quadranet-digits ]]; then source=(--model quadranet-digits); else source=(--config "$WORK/$model.json"); fi
  "$BIN" train "${source[@]}" --dataset digits --epochs 1 --warmup-epochs 0 --out "$WORK/$model" >/dev/null
  "$BIN" export --checkpoint "$WORK/$model" --out "$WORK/$model.onnx"
  if ! "$PYTHON" scripts/onnx_check.py --onnx "$WORK/$model.onnx" --checkpoint "$WORK/$model" --quadranet "$BIN" \
    "$WORK/digits.npy"; then
    failed=$((failed + 1))
  fi
done
checked=4

# 1,000 Fashion-MNIST test images (raw uint8 [N, 28, 28]) and 256 training images as an .npz training set.
FASHION=/usr/share/datasets/fashion-mnist
if [[ -f "$FASHION/t10k-images-idx3-ubyte.gz" && -f "$FASHION/train-images-idx3-ubyte.gz" ]]; then
  "$PYTHON" - "$FASHION" "$WORK" <<'PY'
import gzip, sys
import numpy as np
def idx(path, offset):
    return np.frombuffer(gzip.open(path).read(), dtype=np.uint8, offset=offset)
root, work = sys.argv[1], sys.argv[2]
test = idx(f"{root}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:1000]
np.save(f"{work}/fashion-test.npy", test)
train = idx(f"{root}/train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:256]
labels = idx(f"{root}/train-labels-idx1-ubyte.gz", 8)[:256]
np.savez(f"{work}/fashion-train.npz", x_train=train, y_train=labels, x_test=train[:64], y_test=labels[:64])
PY
  for model in quadranet-28 hornet-28 convnext-28; do
    checked=$((checked + 1))
    "$BIN" train --model "$model" --dataset "$WORK/fashion-train.npz" --epochs 1 --batch-size 64 --warmup-epochs 0 \
      --out "$WORK/fashion-$model" >/dev/null
    "$BIN" export --checkpoint "$WORK/fashion-$model" --out "$WORK/fashion-$model.onnx"
    if ! "$PYTHON" scripts/onnx_check.py --onnx "$WORK/fashion-$model.onnx" --checkpoint "$WORK/fashion-$model" \
      --quadranet "$BIN" "$WORK/fashion-test.npy"; then
      failed=$((failed + 1))
    fi
  done
else
  echo "SKIPPED fashion-mnist: apt-get install dataset-fashion-mnist"
fi
echo "onnx_check: $((checked - failed)) passed, $failed failed"
[[ "$failed" == 0 ]]
