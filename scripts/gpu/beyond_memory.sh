#!/usr/bin/env bash
# Issue 8: inference memory and latency on the GPU as ONE device command (one H200, at most
# 10 minutes): dense vs SMH materialize-everything vs SMH per layer, for ResNet-50 at 25%
# and EfficientNet-B4 -> 5.3M (B0's size), batches 1 and 32 (scripts/beyond_benchmark.py).
# docs/results/beyond.md gives the device command and the CPU numbers.
#
#   Device:     bash scripts/gpu/beyond_memory.sh       (carry: nothing; .whl/ if present)
#   CPU check:  SMOKE=1 OUT=/tmp/mem_smoke PYTHON=/work/venv/bin/python \
#                   bash scripts/gpu/beyond_memory.sh
#
# Knobs: BATCHES (1,32), REPETITIONS (20), MODELS (the script's default), LIMIT (540 s).
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:?set OUT to the folder the results go to (the device tool sets it)}
PYTHON=${PYTHON:-python3}
BATCHES=${BATCHES:-1,32}
REPETITIONS=${REPETITIONS:-20}
LIMIT=${LIMIT:-540}
ARGS=(--batches="$BATCHES" --repetitions="$REPETITIONS")
[[ -n "${MODELS:-}" ]] && ARGS+=(--models="$MODELS")
[[ "${SMOKE:-0}" == 1 ]] && ARGS=(--small)
mkdir -p "$OUT"
# shellcheck source=scripts/gpu/common.sh
source scripts/gpu/common.sh

main() {
    setup_python "" || return 2  # jax, flax, optax, numpy: no wheels needed
    record_version "$OUT/version.txt" "BATCHES=$BATCHES REPETITIONS=$REPETITIONS" \
        "SMOKE=${SMOKE:-0} bash scripts/gpu/beyond_memory.sh"
    timeout -k 10 "$LIMIT" "$PYTHON" scripts/beyond_benchmark.py "${ARGS[@]}" \
        --json="$OUT/beyond_memory.json"
}

main 2>&1 | tee "$OUT/beyond_memory_log.txt"
exit "${PIPESTATUS[0]}"
