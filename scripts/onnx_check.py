#!/usr/bin/env python3
"""Checks an exported ONNX model against the Swift engine on the same images.

1. onnx.checker.check_model(full_check=True), opset 17, and only the standard ops the exporter emits.
2. ONNX Runtime (CPU) on the images, normalized with the statistics in the model's metadata.
3. `quadranet predict --logits` on the same files.
4. Passes when max |ONNX - engine| <= 1e-4 * max |engine logit| and every argmax is identical.

Inputs are the files `quadranet predict` reads: .npy arrays (uint8 or float32; [N,H,W], [N,H,W,C] or
[N,C,H,W]) or IDX image files, of raw pixel values.

Usage: onnx_check.py --onnx model.onnx --checkpoint run/model.safetensors --quadranet .build/release/quadranet \
           IMAGES.npy [MORE...] [--threads N] [--tolerance 1e-4]
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ALLOWED_OPS = {
    "Conv", "Transpose", "LayerNormalization", "MatMul", "Add", "Mul", "Div", "Erf", "Split", "Reshape",
    "ReduceMean", "Gemm",
}
OPSET = 17


def read_images(path):
    """Raw pixels of a .npy or IDX file as float32, with the file's shape."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return np.load(path, allow_pickle=False).astype(np.float32)
    opener = gzip.open if head[:2] == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SystemExit(f"{path}: neither .npy nor an unsigned-byte IDX file")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    return payload.reshape(dims).astype(np.float32)


def to_nchw(images, channels, layout):
    if images.ndim == 3:
        return images[:, None, :, :]
    if images.ndim != 4:
        raise SystemExit(f"images of shape {images.shape} are not [N,H,W], [N,H,W,C] or [N,C,H,W]")
    if layout == "nchw" or (layout == "auto" and images.shape[1] == channels and images.shape[3] != channels):
        return images
    return np.transpose(images, (0, 3, 1, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--quadranet", default=".build/release/quadranet")
    parser.add_argument("--layout", choices=["auto", "nhwc", "nchw"], default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tolerance", type=float, default=1e-4, help="relative to max |logit| (default 1e-4)")
    parser.add_argument("inputs", nargs="+")
    args = parser.parse_args()

    model = onnx.load(args.onnx)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    ops = {n.op_type for n in model.graph.node}
    problems = []
    if opsets.get("", None) != OPSET or len(opsets) != 1:
        problems.append(f"opset imports {opsets}, expected only the default domain at {OPSET}")
    if not ops <= ALLOWED_OPS:
        problems.append(f"unexpected ops {sorted(ops - ALLOWED_OPS)}")
    metadata = {p.key: p.value for p in model.metadata_props}
    normalization = json.loads(metadata["normalization"])
    config = json.loads(metadata["config"])
    channels = config["inputChannels"]

    images = np.concatenate([to_nchw(read_images(p), channels, args.layout) for p in args.inputs])
    images = (images / normalization["maxValue"] - normalization["mean"]) / normalization["std"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    ours_onnx = session.run(["logits"], {"images": images.astype(np.float32)})[0]

    with tempfile.TemporaryDirectory() as work:
        logits_path = os.path.join(work, "logits.npy")
        command = [args.quadranet, "predict", "--checkpoint", args.checkpoint, "--logits", logits_path,
                   "--top-k", "1", "--layout", args.layout, "--threads", str(args.threads), *args.inputs]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        engine = np.load(logits_path)

    if engine.shape != ours_onnx.shape:
        problems.append(f"shapes differ: engine {engine.shape}, ONNX {ours_onnx.shape}")
    else:
        scale = float(np.abs(engine).max())
        difference = float(np.abs(engine - ours_onnx).max())
        mismatches = int((engine.argmax(1) != ours_onnx.argmax(1)).sum())
        bound = args.tolerance * scale
        print(f"{config['name']}: {len(engine)} images, {len(model.graph.node)} nodes, ops {sorted(ops)}")
        print(f"  max |delta| = {difference:.3g} (bound {bound:.3g} = {args.tolerance:g} * max|logit| {scale:.3g}); "
              f"argmax mismatches: {mismatches}")
        if not difference <= bound:
            problems.append(f"max |delta| {difference:.3g} exceeds {bound:.3g}")
        if mismatches:
            problems.append(f"{mismatches} argmax mismatches")
    if problems:
        print(f"FAILED {args.onnx}: " + "; ".join(problems))
        return 1
    print(f"OK {args.onnx}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
