#!/usr/bin/env bash
# Issue 6: the side-by-side training-step benchmark (scripts/benchmark.py) for all four
# presets as ONE device command (one H200, at most 10 minutes): dense, SMH (product pool),
# SMH with a float32 virtual matrix, Kronecker, hash K = 1/2/10 and the width multiplier
# at SMH's trainable size, plus materialization and inference, each preset in its own
# process under its own time limit so that one slow or failing preset costs only itself.
# docs/results/benchmark.md gives the device command and the arithmetic.
#
#   Device:     GIT_COMMIT=<sha> bash scripts/gpu/benchmark.sh        (carry: nothing)
#   CPU check:  SMOKE=1 OUT=/tmp/bench_smoke PYTHON=/work/venv/bin/python \
#                   bash scripts/gpu/benchmark.sh
#
# SMOKE=1 keeps every step (every preset, every variant, the time limits, the files) but
# runs each preset with --small (batch 4, the model's smallest input; the models and SMH
# sizes stay full size), 2 repetitions, float32, 4x the time limits, and fewer variants
# for the EfficientNets (last field of PLAN).
# Needs only jax, flax, optax, numpy (no wheels, no data). Writes into $OUT (at most 8
# files come back): bench_<preset>.json (4), benchmark_tables.txt, benchmark_log.txt,
# version.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:?set OUT to the folder the results go to (the device tool sets it)}
PYTHON=${PYTHON:-python3}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT"
# shellcheck source=scripts/gpu/common.sh
source scripts/gpu/common.sh

# preset | hard limit (s) | benchmark.py arguments. Limits sum to 555 s; with ~15 s of
# start-up and version printing the command stays under the device's 600 s. Priority
# order: the presets with targets first. --max_seconds (the limit minus 20 s) makes the
# script cut its repetitions to what fits after compiling, so a limit is rarely hit.
# The 4th field: what SMOKE=1 adds (EfficientNet train steps take minutes each to compile
# on this 2-core CPU: fewer variants there; the ResNets keep every variant).
PLAN=(
    "resnet32_cifar|100|--variants dense,smh,smh_f32,kronecker,hash1,hash2,hash10,width --repetitions 30 --calls_per_sample 5|"
    "resnet50|165|--variants dense,smh,smh_f32,kronecker,hash1,hash2,hash10,width --repetitions 20 --calls_per_sample 2|"
    "efficientnet_b4|200|--variants dense,smh,hash1,hash10,width --repetitions 15|--variants dense,smh,hash1 --extras materialize"
    "efficientnet_b0|90|--variants dense,smh,hash1,hash10,width --repetitions 20 --calls_per_sample 2|--variants dense,width --extras none"
)

main() {
    echo "$(elapsed) start $(date -Is) on $(hostname)"
    setup_python "" || return 2  # jax, flax, optax, numpy: no wheels needed
    record_version "$OUT/version.txt" "SMOKE=$SMOKE bash scripts/gpu/benchmark.sh"
    : > "$OUT/benchmark_tables.txt"
    local status=0
    for entry in "${PLAN[@]}"; do
        IFS='|' read -r preset limit args smoke_args <<< "$entry"
        if [[ "$SMOKE" == 1 ]]; then
            # float32: this CPU has no fast bfloat16 (the full-size A @ B of ResNet-50 or
            # B4 alone takes seconds in bfloat16 here).
            args="$args --small --repetitions 2 --warmup 1 --dtype float32 $smoke_args"
            limit=$((limit * 4))  # a 2-core CPU compiles far slower than the device host
        fi
        echo "$(elapsed) $preset (limit ${limit} s): $args"
        # shellcheck disable=SC2086
        timeout -k 5 "$limit" "$PYTHON" scripts/benchmark.py --preset "$preset" $args \
            --max_seconds $((limit - 20)) --json "$OUT/bench_$preset.json" \
            > "$OUT/.bench_$preset.txt" 2>&1
        local rc=$?
        cat "$OUT/.bench_$preset.txt"
        # The table is what follows the blank line after the progress lines.
        { echo "== $preset (exit status $rc)"; sed -n '/^$/,$p' "$OUT/.bench_$preset.txt"
          echo; } >> "$OUT/benchmark_tables.txt"
        rm -f "$OUT/.bench_$preset.txt"
        echo "$(elapsed) $preset exit status $rc"
        [[ $rc == 0 ]] || status=$rc
    done
    echo "$(elapsed) done"
    return $status
}

main 2>&1 | tee "$OUT/benchmark_log.txt"
exit "${PIPESTATUS[0]}"
