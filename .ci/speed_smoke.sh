#!/usr/bin/env bash
# Guards against gross speed regressions that the correctness tests cannot see (they check values, not
# time). The tape-free inference engine must not be slower than the tape forward it replaces: both run
# in one process on the same model, so the ratio does not depend on the machine, and the bound is far
# below the measured speed-ups (batch 1: 1.9–2.7x, batch 32: 0.94–1.3x on a 2-core Zen 4), so noise
# cannot trip it. What it catches: an engine kernel gone 100x slower, as a generic function called
# unspecialized across modules did (batch-1 p50 62 ms instead of 0.37 ms) while every test passed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${QUADRANET_BIN:-.build/release/quadranet}"
"$bin" bench inference --models quadranet-28,hornet-28 --batch-sizes 1,32 --runs 30 --threads 1 --json 2>/dev/null \
  | python3 -c '
import json, sys
rows = json.load(sys.stdin)
bad = [r for r in rows if r["speedup"] < 0.5]
for r in rows:
    print("speed smoke: %s batch %d: engine %.0f img/s, tape %.0f img/s (%.2fx)" % (
        r["model"], r["batchSize"], r["engine"]["imagesPerSecond"], r["tape"]["imagesPerSecond"], r["speedup"]))
if bad:
    sys.exit("speed smoke FAILED: the inference engine is over 2x slower than the tape forward")
'

# The kernels against the machine's own FMA peak, measured in the same process (0.74–0.96 on Zen 4,
# 0.58–0.81 with the AVX2 micro-kernel forced there); a quarter of the peak is far below any of those.
"$bin" bench kernels --threads 1 --json 2>/dev/null | python3 -c '
import json, sys
report = json.load(sys.stdin)
slow = [r for r in report["results"] if r["fraction_of_peak"] < 0.25]
print("speed smoke: kernels (fraction of the %.0f GFLOP/s peak): %s" % (report["peak_gflops"],
      ", ".join("%s %.2f" % (r["name"], r["fraction_of_peak"]) for r in report["results"])))
if slow:
    sys.exit("speed smoke FAILED: below a quarter of the FMA peak: " + ", ".join(r["name"] for r in slow))
'

# A whole training step (every op of the tape forward, backward and AdamW) against the same peak: 0.47–0.57
# for these models on Zen 4; a tenth catches an op gone 10x slower, which the engine-vs-tape ratio above
# would not if the tape and the engine shared it.
"$bin" bench models --models quadranet-28,hornet-28 --resolution 28 --batch-size 64 --steps 3 --threads 1 --json \
  2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
for r in rows:
    print("speed smoke: %s training step %.0f img/s, %.2f of the FMA peak" % (
        r["model"], r["train_images_per_second"], r["train_fraction_of_peak"]))
slow = [r["model"] for r in rows if r["train_fraction_of_peak"] < 0.1]
if slow:
    sys.exit("speed smoke FAILED: training step below a tenth of the FMA peak: " + ", ".join(slow))
'
