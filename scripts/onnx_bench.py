#!/usr/bin/env python3
"""ONNX Runtime CPU latency and throughput of an exported model.

Latency: p50/p90/p99 of single-image runs (batch 1). Throughput: images per second at batch 32.
Both use the same thread count (intra_op_num_threads; inter-op 1), so the numbers compare with
`quadranet bench inference --threads N --batch-sizes 1,32`: --json also prints `results`, one record
per batch size with the fields of that command's JSON (p50Milliseconds, p90Milliseconds,
p99Milliseconds: nearest-rank percentiles of the whole batch's latency; imagesPerSecond: batch / mean).

Usage: onnx_bench.py model.onnx [--threads N] [--resolution R] [--runs 200] [--batch-runs 20] [--json]
--resolution is needed only when the model's height and width are dynamic (default: 8 for a digits
model, else 28).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def percentile(values, q):
    """Nearest-rank percentile (sorted[ceil(q/100 * n) - 1]), as `quadranet bench inference`."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(np.ceil(q / 100 * len(ordered)))))
    return float(ordered[rank - 1])


def timing(seconds, batch):
    """The fields of `quadranet bench inference`'s InferenceTiming."""
    return {
        "p50Milliseconds": 1000 * percentile(seconds, 50),
        "p90Milliseconds": 1000 * percentile(seconds, 90),
        "p99Milliseconds": 1000 * percentile(seconds, 99),
        "imagesPerSecond": batch * len(seconds) / sum(seconds),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--runs", type=int, default=200, help="batch-1 runs timed (default 200)")
    parser.add_argument("--batch-runs", type=int, default=20, help="batch-32 runs timed (default 20)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads < 1 or args.runs < 1 or args.batch_runs < 1 or args.warmup < 0:
        raise SystemExit("--threads, --runs and --batch-runs must be at least 1, --warmup at least 0")

    proto = onnx.load(args.model, load_external_data=False)
    metadata = {p.key: p.value for p in proto.metadata_props}
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    channels = dims[1].dim_value
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims[2:]]
    default = 8 if metadata.get("dataset") == "digits" else 28
    height = fixed[0] or args.resolution or default
    width = fixed[1] or args.resolution or default

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)

    def timed(batch, runs):
        images = rng.standard_normal((batch, channels, height, width), dtype=np.float32)
        for _ in range(args.warmup):
            session.run(["logits"], {"images": images})
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(["logits"], {"images": images})
            seconds.append(time.perf_counter() - start)
        return seconds

    single = timed(1, args.runs)
    batched = timed(32, args.batch_runs)
    report = {
        "model": metadata.get("model", os.path.basename(args.model)),
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "input": [channels, height, width],
        "latency_ms": {q: 1000 * percentile(single, int(q[1:])) for q in ("p50", "p90", "p99")},
        "throughput_images_per_s": 32 * len(batched) / sum(batched),
        "results": [
            {"batchSize": 1, "threads": args.threads, "runs": args.runs, "resolution": height,
             "onnxruntime": timing(single, 1)},
            {"batchSize": 32, "threads": args.threads, "runs": args.batch_runs, "resolution": height,
             "onnxruntime": timing(batched, 32)},
        ],
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        latency = report["latency_ms"]
        print(f"{report['model']} ({channels}x{height}x{width}), ONNX Runtime {ort.__version__}, {args.threads} thread(s)")
        print(f"  batch 1 latency: p50 {latency['p50']:.3f} ms, p90 {latency['p90']:.3f} ms, p99 {latency['p99']:.3f} ms")
        print(f"  batch 32 throughput: {report['throughput_images_per_s']:.1f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
