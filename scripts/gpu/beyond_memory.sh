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

{
    echo "git_commit: $(git rev-parse HEAD 2>/dev/null || echo "${GIT_COMMIT:-unknown}")"
    echo "command: BATCHES=$BATCHES REPETITIONS=$REPETITIONS SMOKE=${SMOKE:-0}" \
         "bash scripts/gpu/beyond_memory.sh"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total \
        --format=csv,noheader
} > "$OUT/version.txt" 2>&1
cat "$OUT/version.txt"
# The benchmark needs no ml_collections; PYTHONPATH=. runs the project uninstalled.
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
timeout -k 10 "$LIMIT" "$PYTHON" scripts/beyond_benchmark.py "${ARGS[@]}" \
    --json="$OUT/beyond_memory.json" 2>&1 | tee "$OUT/beyond_memory_log.txt"
exit "${PIPESTATUS[0]}"
