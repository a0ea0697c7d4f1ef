#!/usr/bin/env python3
"""Compares two runs for the MPI equivalence check (standard library only).

  mpi_compare.py losses A.txt B.txt TOL   per-step losses (one per line), relative difference <= TOL
  mpi_compare.py weights A.safetensors B.safetensors TOL
      every float32 tensor: max |a - b| / max(max |a|, 1e-12) <= TOL
Prints the worst difference; exits 1 when above TOL or when the files do not match in shape.
"""
import json
import struct
import sys


def losses(a, b, tol):
    x = [float(v) for v in open(a).read().split()]
    y = [float(v) for v in open(b).read().split()]
    if len(x) != len(y) or not x:
        print(f"step counts differ: {len(x)} vs {len(y)}")
        return 1
    worst = max(abs(u - v) / max(abs(u), abs(v), 1e-12) for u, v in zip(x, y))
    print(f"{len(x)} steps, largest relative loss difference {worst:.3g} (tolerance {tol})")
    return 0 if worst <= tol else 1


def read_safetensors(path):
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {entry['dtype']}, expected F32")
        start, end = entry["data_offsets"]
        tensors[name] = struct.unpack(f"<{(end - start) // 4}f", body[start:end])
    return tensors


def weights(a, b, tol):
    x, y = read_safetensors(a), read_safetensors(b)
    if x.keys() != y.keys():
        print(f"tensor names differ: {sorted(set(x) ^ set(y))[:5]}")
        return 1
    worst, where = 0.0, ""
    for name in x:
        u, v = x[name], y[name]
        if len(u) != len(v):
            print(f"{name}: sizes differ")
            return 1
        scale = max(max((abs(t) for t in u), default=0.0), 1e-12)
        difference = max((abs(p - q) for p, q in zip(u, v)), default=0.0) / scale
        if difference > worst:
            worst, where = difference, name
    print(f"{len(x)} tensors, largest relative weight difference {worst:.3g} ({where}) (tolerance {tol})")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("losses", "weights"):
        raise SystemExit(__doc__)
    sys.exit({"losses": losses, "weights": weights}[sys.argv[1]](sys.argv[2], sys.argv[3], float(sys.argv[4])))
