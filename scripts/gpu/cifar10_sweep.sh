#!/usr/bin/env bash
# A CIFAR-10 sweep preset of scripts/sweep.py as ONE device command (one H200, at most
# 10 minutes): the runs share the GPU (PARALLEL at once), then the CSV, the Markdown
# table, the plot, and (in records.tar.gz) every run's log and summary, nvidia-smi and the
# code version come back in $OUT.
#   PRESET=cifar10_resnet32 (default), 6 runs, 50 epochs: issue 5's reproduction: dense,
#     SMH 25/10/5%, width multipliers matched to SMH 25/10% (docs/results/cifar10_resnet32.md).
#   PRESET=cifar10_resnet32_scale PARALLEL=7: the per-layer scale ablation, 30 epochs
#     (docs/results/scale_stability.md).
#   PRESET=cifar10_resnet32_table1 PARALLEL=5: SMH vs hashing K = 1/2/10 vs Kronecker at
#     10%, 40 epochs (the paper's Table 1 on CIFAR; docs/results/benchmark.md); also
#     scripts/gpu/table1_cifar10.sh.
#
#   Prepare here:  bash scripts/gpu/prepare_carry.sh        (.whl/ and data_local/)
#   Device:        GIT_COMMIT=<sha> bash scripts/gpu/cifar10_sweep.sh
#                  with carry ["data_local", ".whl"]
#   CPU check:     SMOKE=1 OUT=/tmp/r32_smoke PYTHON=/work/venv/bin/python \
#                      bash scripts/gpu/cifar10_sweep.sh
#
# SMOKE=1 keeps every step of the device path (wheels if needed, npz source, preset,
# concurrent runs, time limit, collection, packing) but trains 3 steps of batch 32 on a
# 512-image two-class slice, in float32, with an eval after step 2.
# Knobs: EPOCHS (default: the preset's), PARALLEL (6), TIME_LIMIT (450: seconds the sweep
# may train before running runs are stopped, checkpointed and collected), ROOT (run
# workdirs; only their logs and records are packed into $OUT, checkpoints stay), NPZ.
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:?set OUT to the folder the results go to (the device tool sets it)}
PYTHON=${PYTHON:-python3}
NAME=${PRESET:-cifar10_resnet32}
PARALLEL=${PARALLEL:-6}
TIME_LIMIT=${TIME_LIMIT:-450}
ROOT=${ROOT:-/tmp/smh_$NAME}
NPZ=${NPZ:-data_local/cifar10_jpeg.npz}
SETS=(--set "dataset.path=$NPZ")
[[ -n "${EPOCHS:-}" ]] && SETS+=(--set "num_epochs=$EPOCHS")
if [[ "${SMOKE:-0}" == 1 ]]; then
    # The npz is ordered by class: these slices hold classes 0 and 1, half each; the head
    # stays at 10 classes.
    SETS+=(--set num_steps=3 --set batch_size=32 --set eval_batch_size=128
           --set "dataset.train_split=train[4744:5256]"
           --set "dataset.eval_split=test[872:1128]"
           --set model.num_classes=10 --set model.dtype=float32 --set log_every_steps=1
           --set eval_every_steps=2 --set checkpoint_every_steps=0)
fi
mkdir -p "$OUT"
# shellcheck source=scripts/gpu/common.sh
source scripts/gpu/common.sh

main() {
    echo "$(elapsed) start $(date -Is) on $(hostname)"
    setup_python ml_collections || return 2
    [[ -f "$NPZ" ]] || { echo "error: $NPZ is missing (carry data_local)"; return 2; }
    record_version "$OUT/version.txt" "PRESET=$NAME EPOCHS=${EPOCHS:-} PARALLEL=$PARALLEL" \
        "TIME_LIMIT=$TIME_LIMIT SMOKE=${SMOKE:-0} bash scripts/gpu/cifar10_sweep.sh"
    start_gpu_monitor "$OUT/gpu_utilization.csv" 5  # is the GPU the bottleneck?

    # The sweep: plan (shapes only), PARALLEL runs at once, stop at TIME_LIMIT, collect.
    # Worst case on the device: ~15 s before this, sweep <= TIME_LIMIT + 75 + 10 s, then
    # the collection <= 25 s: under the 600 s a device command may take.
    echo "$(elapsed) sweep"
    timeout -k 10 $((TIME_LIMIT + 75)) "$PYTHON" scripts/sweep.py --preset="$NAME" \
        --root="$ROOT" --parallel="$PARALLEL" --time_limit="$TIME_LIMIT" --grace=30 \
        "${SETS[@]}" --out_dir="$OUT" --name="$NAME"
    local rc=$?
    echo "$(elapsed) sweep exit status $rc"

    # Collect again (also after a killed sweep); every run's record goes into the pack.
    timeout 25 "$PYTHON" scripts/sweep.py --preset="$NAME" --root="$ROOT" --collect_only \
        --out_dir="$OUT" --name="$NAME"
    stop_gpu_monitor
    for dir in "$ROOT"/*/; do
        run=$(basename "$dir")
        mkdir -p "$OUT/runs/$run"
        for f in log.txt summary.json metrics.jsonl config.json sweep_run.json; do
            [[ -f "$dir/$f" ]] && cp "$dir/$f" "$OUT/runs/$run/"
        done
    done
    cp "$ROOT/sweep.json" "$OUT/runs/" 2>/dev/null
    cat "$OUT/$NAME.md" 2>/dev/null
    echo "$(elapsed) done"
    return $rc
}

main 2>&1 | tee "$OUT/sweep_log.txt"
rc=${PIPESTATUS[0]}
# The rest (run records, version, nvidia-smi, GPU load) into records.tar.gz, also after a
# failure: the device brings back at most 8 files.
pack_out "$NAME.csv" "$NAME.md" "$NAME.png" "$NAME.svg" sweep_log.txt 2>&1 \
    | tee -a "$OUT/sweep_log.txt"
[[ ${PIPESTATUS[0]} == 0 ]] || rc=1
exit "$rc"
