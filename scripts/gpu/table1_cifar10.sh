#!/usr/bin/env bash
# Issue 6: the paper's Table 1 comparison on CIFAR-10 ResNet-32 at 10% size as ONE device
# command (one H200, at most 10 minutes): SMH (product pool), unstructured hashing with
# K = 1, 2, 10 and the Kronecker pool, every pool at fraction 0.1 of the hashed weights,
# the same `fast` recipe (EPOCHS epochs) for all, 5 runs at once on the one GPU, then the
# CSV, the Markdown table, every run's log and summary into $OUT. docs/results/benchmark.md
# gives the device command and the arithmetic.
#
#   Prepare here:  bash scripts/gpu/prepare_carry.sh        (.whl/ and data_local/)
#   Device:        GIT_COMMIT=<sha> bash scripts/gpu/table1_cifar10.sh
#                  with carry ["data_local", ".whl"]
#   CPU check:     SMOKE=1 OUT=/tmp/t1_smoke PYTHON=/work/venv/bin/python \
#                      bash scripts/gpu/table1_cifar10.sh
#
# SMOKE=1 keeps every step of the device path (wheels if needed, npz source, 5 concurrent
# runs, time limit, collection) but trains 3 steps of batch 32 on a 512-image two-class
# slice, in float32, with an eval after step 2.
# Knobs: EPOCHS (40), PARALLEL (5), TIME_LIMIT (450: seconds the sweep may train before
# running runs are stopped, checkpointed and collected), ROOT, NPZ.
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:?set OUT to the folder the results go to (the device tool sets it)}
PYTHON=${PYTHON:-python3}
EPOCHS=${EPOCHS:-40}
PARALLEL=${PARALLEL:-5}
TIME_LIMIT=${TIME_LIMIT:-450}
ROOT=${ROOT:-/tmp/smh_table1_cifar10}
NPZ=${NPZ:-data_local/cifar10_jpeg.npz}
NAME=table1_cifar10
CONFIG="configs/resnet32_cifar10_smh.py:fast,epochs=$EPOCHS,npz=$NPZ"
# One SMH run (--fractions) and four named variants, all at fraction 0.1: the same recipe,
# only the pool differs. The hash pool takes exactly 10% of N, the product and Kronecker
# pools round up to whole ranks / replicas (see the plan the sweep prints).
VARIANTS=(
    --variant=kronecker=smh.pool=kronecker,smh.fraction=0.1
    --variant=hash1=smh.pool=hash,smh.num_hashes=1,smh.fraction=0.1
    --variant=hash2=smh.pool=hash,smh.num_hashes=2,smh.fraction=0.1
    --variant=hash10=smh.pool=hash,smh.num_hashes=10,smh.fraction=0.1
)
# Evaluate every 10 epochs (97 steps an epoch) so a run stopped at the limit has a number.
SETS=(--set "num_epochs=$EPOCHS" --set "dataset.path=$NPZ" --set eval_every_steps=970)
if [[ "${SMOKE:-0}" == 1 ]]; then
    # The npz is ordered by class: these slices hold classes 0 and 1, half each.
    SETS+=(--set num_steps=3 --set batch_size=32 --set eval_batch_size=128
           --set "dataset.train_split=train[4744:5256]"
           --set "dataset.eval_split=test[872:1128]"
           --set model.num_classes=10 --set model.dtype=float32 --set log_every_steps=1
           --set eval_every_steps=2 --set checkpoint_every_steps=0)
fi
mkdir -p "$OUT"
START=$(date +%s)

elapsed() { echo "[$(( $(date +%s) - START )) s]"; }

main() {
    echo "$(elapsed) start $(date -Is) on $(hostname)"
    # 1. Pure-Python packages the device lacks travel as wheels in .whl/.
    if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target /tmp/site .whl/*.whl || return 2
        export PYTHONPATH=/tmp/site:.${PYTHONPATH:+:$PYTHONPATH}
    else
        export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
    fi
    [[ -f "$NPZ" ]] || { echo "error: $NPZ is missing (carry data_local)"; return 2; }

    # 2. What ran where.
    echo "git_commit: $(git rev-parse HEAD 2>/dev/null || echo "${GIT_COMMIT:-unknown}")"
    echo "code_sha256: $(find smh_jax configs scripts train.py -name '*.py' | sort \
        | xargs sha256sum | sha256sum | cut -d' ' -f1)"
    echo "command: EPOCHS=$EPOCHS PARALLEL=$PARALLEL TIME_LIMIT=$TIME_LIMIT" \
         "SMOKE=${SMOKE:-0} bash scripts/gpu/table1_cifar10.sh"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi 2>&1 | head -15
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw \
            --format=csv -l 10 > "$OUT/gpu_utilization.csv" 2>&1 &
        SMI_PID=$!
    fi

    # 3. The sweep: plan (shapes only), 5 runs at once, stop at TIME_LIMIT, collect.
    echo "$(elapsed) sweep"
    timeout -k 10 $((TIME_LIMIT + 75)) "$PYTHON" scripts/sweep.py --config="$CONFIG" \
        --fractions=0.1 --no-dense "${VARIANTS[@]}" --root="$ROOT" --parallel="$PARALLEL" \
        --time_limit="$TIME_LIMIT" --grace=30 "${SETS[@]}" --out_dir="$OUT" --name=$NAME
    local rc=$?
    echo "$(elapsed) sweep exit status $rc"

    # 4. Collect again (also after a killed sweep); bring back each run's summary and the
    #    tail of its log in one file (at most 8 files come back from a device call).
    timeout 25 "$PYTHON" scripts/sweep.py --config="$CONFIG" --root="$ROOT" --collect_only \
        --out_dir="$OUT" --name=$NAME
    for dir in "$ROOT"/*/; do
        echo "===== $(basename "$dir")"
        [[ -f "$dir/summary.json" ]] && cat "$dir/summary.json"
        [[ -f "$dir/log.txt" ]] && tail -n 25 "$dir/log.txt"
    done > "$OUT/runs.txt"
    [[ -n "${SMI_PID:-}" ]] && kill "$SMI_PID" 2>/dev/null
    cat "$OUT/$NAME.md" 2>/dev/null
    echo "$(elapsed) done"
    return $rc
}

main 2>&1 | tee "$OUT/table1_log.txt"
exit "${PIPESTATUS[0]}"
