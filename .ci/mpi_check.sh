#!/usr/bin/env bash
# Data-parallel equivalence check over Open MPI (issue 11): `mpirun -np 2` training must match the
# single-process run at the same global batch (per-step losses and final weights within 1e-5
# relative), checkpoints must cross between the modes, and misconfigured or failing ranks must end
# the job with a message instead of hanging. Installs Open MPI with apt when missing, builds with
# the MPI trait into .build-mpi, prints 'MPI check: N passed, N failed' and exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpirun >/dev/null || ! pkg-config --exists ompi-c 2>/dev/null; then
  echo "installing Open MPI (openmpi-bin libopenmpi-dev)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null \
    || { echo "MPI check: 0 passed, 1 failed (could not install openmpi-bin libopenmpi-dev)"; exit 1; }
fi
command -v python3 >/dev/null || { echo "MPI check: 0 passed, 1 failed (python3 is needed to compare runs)"; exit 1; }

echo "building with --traits MPI into .build-mpi"
if ! swift build -c release --traits MPI --scratch-path .build-mpi --product quadranet; then
  echo "MPI check: 0 passed, 1 failed (build with --traits MPI)"; exit 1
fi
BIN=".build-mpi/release/quadranet"
# --oversubscribe: more ranks than cores is fine for a check; vader is shared memory on one machine.
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
check() {  # check NAME COMMAND...
  local name="$1"; shift
  if "$@" >"$WORK/log" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name"; tail -n 2 "$WORK/log" | sed 's/^/    /'
  else
    failed=$((failed + 1)); echo "FAIL $name"; tail -n 20 "$WORK/log" | sed 's/^/    /'
  fi
}

# quadranet-digits has drop path and the digits recipe augments (crop): both must reach each shard as in one process.
RECIPE=(--dataset digits --model quadranet-digits --epochs 2 --batch-size 64 --seed 5 --threads 1)
single() { "$BIN" train "${RECIPE[@]}" --out "$WORK/single" --step-losses "$WORK/single.txt"; }
distributed() {
  timeout 600 "${MPIRUN[@]}" -np 2 "$BIN" train "${RECIPE[@]}" --distributed --out "$WORK/ddp" --step-losses "$WORK/ddp.txt"
}
check "single-process reference run" single
check "mpirun -np 2 run" distributed
check "per-step losses within 1e-5 relative" python3 .ci/mpi_compare.py losses "$WORK/single.txt" "$WORK/ddp.txt" 1e-5
check "final weights within 1e-5 relative" \
  python3 .ci/mpi_compare.py weights "$WORK/single/model.safetensors" "$WORK/ddp/model.safetensors" 1e-5

# Checkpoints cross modes: 1 distributed epoch resumed single-process (and the other way round) = the reference.
cross() {
  timeout 600 "${MPIRUN[@]}" -np 2 "$BIN" train "${RECIPE[@]}" --distributed --out "$WORK/a" --stop-after-epoch 1 &&
    "$BIN" train --resume "$WORK/a" --threads 1 &&
    python3 .ci/mpi_compare.py weights "$WORK/single/model.safetensors" "$WORK/a/model.safetensors" 1e-5 &&
    "$BIN" train "${RECIPE[@]}" --out "$WORK/b" --stop-after-epoch 1 &&
    timeout 600 "${MPIRUN[@]}" -np 2 "$BIN" train --resume "$WORK/b" --threads 1 --distributed &&
    python3 .ci/mpi_compare.py weights "$WORK/single/model.safetensors" "$WORK/b/model.safetensors" 1e-5
}
check "distributed checkpoint resumes single-process and vice versa" cross

# Ranks started with different options are rejected at start; the job ends (no hang) naming the mismatch.
mismatch() {
  ! timeout 300 "${MPIRUN[@]}" -np 1 "$BIN" train "${RECIPE[@]}" --distributed --out "$WORK/m" --lr 0.002 \
    : -np 1 "$BIN" train "${RECIPE[@]}" --distributed --out "$WORK/m" --lr 0.001 >"$WORK/m.log" 2>&1 &&
    grep -q "differ" "$WORK/m.log" && ! grep -q "timed out" "$WORK/m.log"
}
check "different options on the ranks are rejected" mismatch

# A rank that fails (here: rank 1 is given a dataset directory that does not exist) aborts the whole job.
failing() {
  ! timeout 300 "${MPIRUN[@]}" -np 1 "$BIN" train "${RECIPE[@]}" --distributed --out "$WORK/f" \
    : -np 1 "$BIN" train --dataset "$WORK/missing" --model quadranet-digits --epochs 2 --batch-size 64 --seed 5 \
    --threads 1 --distributed --out "$WORK/f" >"$WORK/f.log" 2>&1
  local status=$?
  [ "$status" -eq 0 ] && grep -q "missing" "$WORK/f.log"
}
check "a failing rank aborts the job with its message" failing

# Without the trait, --distributed names the trait and the packages.
no_trait() {
  local default_bin=".build/release/quadranet"
  [ -x "$default_bin" ] || swift build -c release --product quadranet >/dev/null || return 1
  ! "$default_bin" train --distributed >"$WORK/n.log" 2>&1 && grep -q "traits MPI" "$WORK/n.log" &&
    grep -q "libopenmpi-dev" "$WORK/n.log"
}
check "--distributed without the MPI trait explains what to install" no_trait

echo "MPI check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
