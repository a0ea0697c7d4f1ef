#!/usr/bin/env bash
# Paired A/B of two `quadranet` binaries (or of one binary and PyTorch) on a noisy 2-core machine.
#
# Sequential A/B runs on a shared VM scatter by 10-20% (neighbours and memory bandwidth change between runs).
# Here both sides run AT THE SAME TIME, one pinned to each core, then swapped: they see the same neighbours and
# the same bandwidth, and the pairs agree within 1-2%. The price: the two processes share L3 and memory
# bandwidth, so the figures are ratios, not the machine's one-process absolute speed.
#
#   scripts/paired_bench.sh OLD_BIN NEW_BIN [ROUNDS] [bench models flags…]
#   scripts/paired_bench.sh OLD_BIN torch  [ROUNDS]          # PyTorch side: scripts/torch_bench.py (quadranet-28)
#
# Default flags: --models quadranet-28 --resolution 28 --batch-size 64 --steps 30 --threads 1 (one model).
# Prints one line per run (side, core, best and median img/s) and, per side, the mean of the best figures.
# The PyTorch side needs the venv of scripts/torch_bench.py's docstring at $TORCH_VENV (default /work/venv-torch).
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
A=$1; B=$2; ROUNDS=${3:-3}; shift 2; [ $# -gt 0 ] && shift
FLAGS=("$@")
[ ${#FLAGS[@]} -eq 0 ] && FLAGS=(--models quadranet-28 --resolution 28 --batch-size 64 --steps 30 --threads 1)
TORCH_VENV=${TORCH_VENV:-/work/venv-torch}
if [[ ! "$ROUNDS" =~ ^[1-9][0-9]?$ ]]; then echo "ROUNDS must be 1...99, got '$ROUNDS'" >&2; exit 2; fi
for side in "$A" "$B"; do
  if [ "$side" != torch ] && [ ! -x "$side" ]; then echo "not an executable: $side" >&2; exit 2; fi
done
if [ "$A" = torch ] || [ "$B" = torch ]; then
  [ -x "$TORCH_VENV/bin/python" ] || { echo "no PyTorch venv at $TORCH_VENV (see scripts/torch_bench.py)" >&2; exit 2; }
fi
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run SIDE CORE FILE: one measurement of SIDE pinned to CORE, as "SIDE coreN best median" in FILE; on failure the
# side's own error output goes to FILE.err and the status is non-zero.
run() {
  local side=$1 core=$2 file=$3
  local json="$file.json"
  if [ "$side" = torch ]; then
    taskset -c "$core" "$TORCH_VENV/bin/python" scripts/torch_bench.py --threads 1 --batch-size 64 --steps 25 \
      --models quadranet-28 >"$json" 2>"$file.err" || return 1
    python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['results'][0]; f=lambda x: '%.1f' % x if x >= 100 else '%.3f' % x; print('torch core$core', f(d['train_images_per_second']), f(d['train_images_per_second_median']))" \
      "$json" >"$file" 2>>"$file.err"
  else
    taskset -c "$core" "$side" bench models "${FLAGS[@]}" --json >"$json" 2>"$file.err" || return 1
    python3 -c "import json,sys; d=json.load(open(sys.argv[1]))[0]; f=lambda x: '%.1f' % x if x >= 100 else '%.3f' % x; print('$side core$core', f(d['train_images_per_second']), f(d['train_images_per_second_median']))" \
      "$json" >"$file" 2>>"$file.err"
  fi
}

# pair FIRST SECOND: FIRST on core 0 and SECOND on core 1 at the same time; stops the script if either failed.
pair() {
  local status=0
  run "$1" 0 "$out/a" & local first=$!
  run "$2" 1 "$out/b" & local second=$!
  wait "$first" || { status=1; echo "$1 failed:" >&2; tail -n 5 "$out/a.err" >&2; }
  wait "$second" || { status=1; echo "$2 failed:" >&2; tail -n 5 "$out/b.err" >&2; }
  [ "$status" -eq 0 ] || exit 1
  cat "$out/a" "$out/b" | tee -a "$out/all"
}

for round in $(seq "$ROUNDS"); do
  pair "$A" "$B"
  pair "$B" "$A"
done
echo "side mean-best mean-median (img/s over $((2 * ROUNDS)) runs)"
awk '{best[$1] += $3; median[$1] += $4; n[$1]++} function f(x) {return sprintf(x >= 100 ? "%.1f" : "%.3f", x)} END {for (s in n) print s, f(best[s] / n[s]), f(median[s] / n[s])}' "$out/all"
