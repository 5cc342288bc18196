#!/usr/bin/env bash
# A CIFAR-10 sweep preset of scripts/sweep.py as ONE device command (one H200, at most
# 10 minutes): the runs share the GPU (PARALLEL at once), then the CSV, the Markdown
# table, the plot, every run's log and summary, nvidia-smi and the code version go to $OUT.
#   PRESET=cifar10_resnet32 (default), 6 runs, EPOCHS=50: issue 5's reproduction: dense,
#     SMH 25/10/5%, width multipliers matched to SMH 25/10% (docs/results/cifar10_resnet32.md).
#   PRESET=cifar10_resnet32_scale PARALLEL=7 EPOCHS=30: the per-layer scale ablation
#     (docs/results/scale_stability.md).
#
#   Prepare here:  bash scripts/gpu/prepare_carry.sh        (.whl/ and data_local/)
#   Device:        GIT_COMMIT=<sha> bash scripts/gpu/cifar10_sweep.sh
#                  with carry ["data_local", ".whl"]
#   CPU check:     SMOKE=1 OUT=/tmp/r32_smoke PYTHON=/work/venv/bin/python \
#                      bash scripts/gpu/cifar10_sweep.sh
#
# SMOKE=1 keeps every step of the device path (wheels if needed, npz source, preset,
# 6 concurrent runs, time limit, collection) but trains 3 steps of batch 32 on a
# 512-image two-class slice, in float32, with an eval after step 2.
# Knobs: EPOCHS (50), PARALLEL (6), TIME_LIMIT (450: seconds the sweep may train before
# running runs are stopped, checkpointed and collected), ROOT (run workdirs; only their
# logs and records are copied to $OUT, checkpoints stay), NPZ.
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:?set OUT to the folder the results go to (the device tool sets it)}
PYTHON=${PYTHON:-python3}
EPOCHS=${EPOCHS:-50}
PARALLEL=${PARALLEL:-6}
TIME_LIMIT=${TIME_LIMIT:-450}
ROOT=${ROOT:-/tmp/smh_cifar10_resnet32}
NPZ=${NPZ:-data_local/cifar10_jpeg.npz}
NAME=${PRESET:-cifar10_resnet32}
SETS=(--set "num_epochs=$EPOCHS" --set "dataset.path=$NPZ")
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

    # 2. What ran where: code version, GPU, library versions.
    {
        echo "git_commit: $(git rev-parse HEAD 2>/dev/null || echo "${GIT_COMMIT:-unknown}")"
        echo "code_sha256: $(find smh_jax configs scripts train.py -name '*.py' | sort \
            | xargs sha256sum | sha256sum | cut -d' ' -f1)"
        echo "command: PRESET=$NAME EPOCHS=$EPOCHS PARALLEL=$PARALLEL" \
             "TIME_LIMIT=$TIME_LIMIT SMOKE=${SMOKE:-0} bash scripts/gpu/cifar10_sweep.sh"
    } > "$OUT/version.txt"
    cat "$OUT/version.txt"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
        head -15 "$OUT/nvidia-smi.txt"
        # GPU load every 5 s while the runs share it: is the GPU the bottleneck?
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw \
            --format=csv -l 5 > "$OUT/gpu_utilization.csv" 2>&1 &
        SMI_PID=$!
    fi
    "$PYTHON" -c "import sys, jax, flax, optax, orbax.checkpoint as o, numpy, matplotlib; \
print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, 'orbax', o.__version__, 'numpy', numpy.__version__)" \
        | tee -a "$OUT/version.txt"

    # 3. The sweep: plan (shapes only), 6 runs at once, stop at TIME_LIMIT, collect.
    echo "$(elapsed) sweep"
    # Worst case on the device: ~15 s before this, sweep <= TIME_LIMIT + 75 + 10 s, then the
    # collection <= 25 s: under the 600 s a device command may take.
    timeout -k 10 $((TIME_LIMIT + 75)) "$PYTHON" scripts/sweep.py --preset=$NAME \
        --root="$ROOT" --parallel="$PARALLEL" --time_limit="$TIME_LIMIT" --grace=30 \
        "${SETS[@]}" --out_dir="$OUT" --name=$NAME
    local rc=$?
    echo "$(elapsed) sweep exit status $rc"

    # 4. Collect again (also after a killed sweep) and bring back every run's record.
    timeout 25 "$PYTHON" scripts/sweep.py --preset=$NAME --root="$ROOT" --collect_only \
        --out_dir="$OUT" --name=$NAME
    for dir in "$ROOT"/*/; do
        run=$(basename "$dir")
        mkdir -p "$OUT/runs/$run"
        for f in log.txt summary.json metrics.jsonl config.json sweep_run.json; do
            [[ -f "$dir/$f" ]] && cp "$dir/$f" "$OUT/runs/$run/"
        done
    done
    cp "$ROOT/sweep.json" "$OUT/runs/" 2>/dev/null
    [[ -n "${SMI_PID:-}" ]] && kill "$SMI_PID" 2>/dev/null
    cat "$OUT/$NAME.md" 2>/dev/null
    echo "$(elapsed) done"
    return $rc
}

main 2>&1 | tee "$OUT/repro_log.txt"
exit "${PIPESTATUS[0]}"
