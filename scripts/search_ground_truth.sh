#!/usr/bin/env bash
# Ground truth for `quadranet search proxies`: trains architectures spread over the fashion-mnist
# search space with the dataset's default recipe and writes their test accuracies.
#
#   scripts/search_ground_truth.sh [OUT_DIR] [extra `quadranet train` flags...]
#
#   OUT_DIR           default search-ground-truth; gets configs/ (one model config per architecture),
#                     runs/<name>/ (each training run) and ground-truth.json ([{"config", "accuracy"}])
#   extra flags       passed to every `quadranet train`, e.g. --threads 2, or --epochs 1 for a smoke test
#   ARCHS=N           architectures, 12...1000 (default 12): the ones at evenly spaced MAC quantiles of
#                     1000 random draws (`quadranet search sample`), so small and large ones are both in
#   SEED=S            seed of the draw (default 12)
#   LIMIT=K           train only the first K architectures (cheapest first), 1...ARCHS: a smoke test,
#                     e.g. LIMIT=1 scripts/search_ground_truth.sh /tmp/gt --epochs 1
#   QUADRANET=PATH    the binary (default .build/release/quadranet; build it with swift build -c release)
#
# Re-running continues: finished runs (runs/<name>/summary.json) are kept, an interrupted one resumes
# from its checkpoint. The full default recipe takes hours per architecture on 2 cores.
set -euo pipefail

out=${1:-search-ground-truth}
shift || true
archs=${ARCHS:-12}
seed=${SEED:-12}
bin=${QUADRANET:-.build/release/quadranet}
limit=${LIMIT:-$archs}

if ! [[ "$archs" =~ ^[0-9]+$ ]] || ((archs < 12 || archs > 1000)); then
  echo "ARCHS=$archs: expected an integer in 12...1000" >&2
  exit 2
fi
if ! [[ "$limit" =~ ^[0-9]+$ ]] || ((limit < 1 || limit > archs)); then
  echo "LIMIT=$limit: expected an integer in 1...$archs (ARCHS)" >&2
  exit 2
fi
if [[ ! -x "$bin" ]]; then
  echo "$bin not found or not executable: build it with 'swift build -c release' or set QUADRANET" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "python3 is needed to assemble the JSON (apt-get install python3)" >&2; exit 2; }

mkdir -p "$out/configs" "$out/runs"
"$bin" search sample --space fashion-mnist --archs "$archs" --seed "$seed" --out "$out/configs"

configs=("$out"/configs/*.json)
for config in "${configs[@]:0:limit}"; do
  name=$(basename "$config" .json)
  run="$out/runs/$name"
  if [[ -f "$run/summary.json" ]]; then
    echo "$name: already trained, kept"
  elif [[ -d "$run/checkpoints" ]]; then
    echo "$name: resuming"
    "$bin" train --resume "$run" "$@"
  else
    echo "$name: training"
    "$bin" train --config "$config" --dataset fashion-mnist --out "$run" "$@"
  fi
done

python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
entries = []
for config in sorted((out / "configs").glob("*.json")):
    summary_file = out / "runs" / config.stem / "summary.json"
    if not summary_file.exists():
        continue  # not trained (LIMIT) or interrupted
    summary = json.loads(summary_file.read_text())
    entries.append({"config": json.loads(config.read_text()), "accuracy": summary["test_accuracy"]})
(out / "ground-truth.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
print(f"wrote {out / 'ground-truth.json'} ({len(entries)} architectures); next: quadranet search proxies {out / 'ground-truth.json'}")
PY
