#!/usr/bin/env bash
# Issue 8: warm start from a trained dense model, CIFAR-10 ResNet-32, as ONE device command
# (one H200, at most 10 minutes). docs/results/beyond.md gives the device command.
#
#   A. at once on the one GPU: the dense ResNet-32 and SMH from scratch at 25% and 10%,
#      all with the `fast` recipe shortened to EPOCHS epochs;
#   B. the dense model projected onto SMH at 25% and 10% (truncated SVD), evaluated
#      right away, and again after re-estimating the BatchNorm statistics
#      (scripts/warm_start_eval.py --bn_batches);
#   C. fine-tunes from the projection for FT_EPOCHS (~10% of EPOCHS) at each LR of
#      FT_LRS, all at once; then the compressed artifact of the 25% fine-tune
#      (eval.py --export_smh) next to the dense export (--export_dense), its bfloat16
#      copy, both evaluated from the artifact alone, also per layer
#      (scripts/artifact_eval.py --recast=bfloat16 --per_layer);
#   D. results.json / results.md (every accuracy, the artifact bytes) and beyond_log.txt
#      into $OUT, every stage's log, summary and JSON packed into records.tar.gz.
#
#   Prepare here:  bash scripts/gpu/prepare_carry.sh        (.whl/ and data_local/)
#   Device:        bash scripts/gpu/beyond_cifar10.sh        carry ["data_local", ".whl"]
#   CPU check:     SMOKE=1 OUT=/tmp/beyond_smoke PYTHON=/work/venv/bin/python \
#                      bash scripts/gpu/beyond_cifar10.sh
#
# SMOKE=1 keeps every step of the device path but trains a few steps of batch 32 on a
# 512-image slice in float32. Knobs: EPOCHS (30), FT_EPOCHS (3), FT_LRS ("0.4 0.04"),
# ROOT (workdirs; only logs and JSON are packed into $OUT), NPZ, STAGE_LIMIT (seconds a process may
# take), EXPORT_DEADLINE (430: skip the exports if stages A-C ran past it), DEADLINE (560:
# the exports stop by then, so the collection still happens inside the device's 600 s).
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:?set OUT to the folder the results go to (the device tool sets it)}
PYTHON=${PYTHON:-python3}
EPOCHS=${EPOCHS:-30}
FT_EPOCHS=${FT_EPOCHS:-3}
FT_LRS=${FT_LRS:-"0.4 0.04"}
ROOT=${ROOT:-/tmp/smh_beyond}
NPZ=${NPZ:-data_local/cifar10_jpeg.npz}
STAGE_LIMIT=${STAGE_LIMIT:-200}
BN_BATCHES=${BN_BATCHES:-50}
DENSE_CFG="configs/resnet32_cifar10.py:fast,epochs=$EPOCHS,npz=$NPZ"
SMH_CFG="configs/resnet32_cifar10_smh.py:fast,epochs=$EPOCHS,npz=$NPZ"
FT_CFG="configs/resnet32_cifar10_smh.py:fast,epochs=$FT_EPOCHS,npz=$NPZ"
SETS=(--config.checkpoint_every_steps=0)
if [[ "${SMOKE:-0}" == 1 ]]; then
    # The npz is ordered by class, so a slice holds one class: fix the head at 10 classes.
    SETS+=(--config.num_steps=3 --config.batch_size=32 --config.eval_batch_size=128
           "--config.dataset.train_split=train[:512]" "--config.dataset.eval_split=test[:256]"
           --config.model.num_classes=10 --config.model.dtype=float32
           --config.log_every_steps=1)
    BN_BATCHES=2
fi
# Several processes share the one GPU: allocate on demand, not 75% each.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$OUT" "$ROOT"
# shellcheck source=scripts/gpu/common.sh
source scripts/gpu/common.sh

# train NAME CONFIG [overrides...]: one train.py run in $ROOT/NAME, log in $OUT/NAME.log.
train() {
    local name=$1 config=$2
    shift 2
    timeout -k 10 "$STAGE_LIMIT" "$PYTHON" train.py --config="$config" "${SETS[@]}" "$@" \
        --workdir="$ROOT/$name" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$(elapsed) $name exit $rc"
    cp "$ROOT/$name/summary.json" "$OUT/$name.summary.json" 2>/dev/null
    return $rc
}

project() {  # project FRACTION: accuracy right after projection (and after BN re-estimation)
    timeout -k 10 "$STAGE_LIMIT" "$PYTHON" scripts/warm_start_eval.py --config="$SMH_CFG" \
        "${SETS[@]}" --config.smh.fraction="$1" --config.smh.init_from_dense="$ROOT/dense" \
        --bn_batches="$BN_BATCHES" --out="$OUT/project_$1.json" > "$OUT/project_$1.log" 2>&1
    echo "$(elapsed) project $1 exit $?"
}

main() {
    echo "$(elapsed) start $(date -Is) on $(hostname)"
    setup_python ml_collections || return 2
    [[ -f "$NPZ" ]] || { echo "error: $NPZ is missing (carry data_local)"; return 2; }
    record_version "$OUT/version.txt" "EPOCHS=$EPOCHS FT_EPOCHS=$FT_EPOCHS" \
        "FT_LRS='$FT_LRS' SMOKE=${SMOKE:-0} bash scripts/gpu/beyond_cifar10.sh"

    echo "$(elapsed) A: dense + SMH from scratch at 25% and 10%, $EPOCHS epochs, at once"
    train dense "$DENSE_CFG" &
    local dense_pid=$!
    train scratch_0.25 "$SMH_CFG" --config.smh.fraction=0.25 &
    train scratch_0.1 "$SMH_CFG" --config.smh.fraction=0.1 &
    wait "$dense_pid" || { echo "error: the dense run failed"; wait; return 1; }

    echo "$(elapsed) B: projection at 25% and 10%"
    project 0.25 &
    local p1=$!
    project 0.1 &
    wait "$p1" "$!"

    echo "$(elapsed) C: fine-tunes from the projection, $FT_EPOCHS epochs, LR peaks $FT_LRS"
    for fraction in 0.25 0.1; do
        for lr in $FT_LRS; do
            train "finetune_${fraction}_lr$lr" "$FT_CFG" --config.smh.fraction="$fraction" \
                --config.smh.init_from_dense="$ROOT/dense" \
                --config.optimizer.learning_rate="$lr" &
        done
    done
    wait

    if (( $(date +%s) - START > ${EXPORT_DEADLINE:-430} )); then
        echo "$(elapsed) skipping the exports: past EXPORT_DEADLINE (${EXPORT_DEADLINE:-430} s)"
    else
        exports
    fi

    echo "$(elapsed) D: collect"
    collect
    echo "$(elapsed) done"
}

exports() {
    echo "$(elapsed) C: compressed artifact of the 25% fine-tune next to the dense export"
    local lr ft left
    lr=$(echo "$FT_LRS" | cut -d' ' -f1)
    ft="$ROOT/finetune_0.25_lr$lr"
    rm -rf "$ROOT/artifact" "$ROOT/artifact_bfloat16" "$ROOT/dense_export"
    left=$(( ${DEADLINE:-560} - ($(date +%s) - START) ))
    timeout -k 5 "$left" "$PYTHON" eval.py --config="$FT_CFG" "${SETS[@]}" \
        --config.smh.fraction=0.25 --config.smh.init_from_dense="$ROOT/dense" \
        --config.optimizer.learning_rate="$lr" --workdir="$ft" \
        --export_smh="$ROOT/artifact" --export_dense="$ROOT/dense_export" \
        > "$OUT/export.log" 2>&1 && cp "$ft/eval.json" "$OUT/export.eval.json"
    echo "$(elapsed) export exit $?"
    left=$(( ${DEADLINE:-560} - ($(date +%s) - START) ))
    timeout -k 5 "$left" "$PYTHON" scripts/artifact_eval.py --config="$FT_CFG" \
        "${SETS[@]}" --artifacts="$ROOT/artifact" --recast=bfloat16 --per_layer \
        --out="$OUT/artifact_eval.json" > "$OUT/artifact_eval.log" 2>&1
    echo "$(elapsed) artifact_eval exit $?"
}

collect() {
    "$PYTHON" - "$OUT" "$ROOT" <<'EOF'
import glob, json, os, sys
out, root = sys.argv[1], sys.argv[2]
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
runs = {os.path.basename(p)[:-len(".summary.json")]: load(p)
        for p in sorted(glob.glob(os.path.join(out, "*.summary.json")))}
projections = {os.path.basename(p)[len("project_"):-5]: load(p)
               for p in sorted(glob.glob(os.path.join(out, "project_*.json")))}
def size(path):
    return sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(path) for n in ns)
exports = {name: size(os.path.join(root, name)) for name in
           ("artifact", "artifact_bfloat16", "dense_export")
           if os.path.isdir(os.path.join(root, name))}
result = {"runs": runs, "projections": projections, "export_bytes": exports,
          "export_eval": load(os.path.join(out, "export.eval.json")),
          "artifact_eval": load(os.path.join(out, "artifact_eval.json"))}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
lines = ["| run | accuracy | trainable | steps | wall s |", "| --- | --- | --- | --- | --- |"]
for name, s in runs.items():
    if s:
        lines.append(f"| {name} | {s['accuracy']:.4f} | {s['trainable_params']:,} | "
                     f"{s['steps']} | {s['wall_seconds']:.0f} |")
for fraction, p in projections.items():
    if p:
        lines.append(f"| projection {fraction} (no training) | {p['accuracy']:.4f} | "
                     f"{p['trainable_params']:,} | 0 | - |")
        if "accuracy_bn_recalibrated" in p:
            lines.append(f"| projection {fraction} + BN re-estimated ({p['bn_batches']} "
                         f"batches) | {p['accuracy_bn_recalibrated']:.4f} | "
                         f"{p['trainable_params']:,} | 0 | - |")
lines.append("")
lines += [f"- {k}: {v:,} bytes" for k, v in exports.items()]
for a in (result["artifact_eval"] or {}).get("results", []):
    lines.append(f"- {a['artifact']} ({a['factor_dtype']}): accuracy {a['accuracy']:.4f}, "
                 f"per layer {a.get('accuracy_per_layer', float('nan')):.4f}, "
                 f"{a['bytes']:,} bytes (ideal {a['ideal_bytes']:,})")
text = "\n".join(lines)
with open(os.path.join(out, "results.md"), "w") as f:
    f.write(text + "\n")
print(text)
EOF
}

main 2>&1 | tee "$OUT/beyond_log.txt"
rc=${PIPESTATUS[0]}
# Every stage's log, summary and JSON go into records.tar.gz, also after a failed stage
# (the device brings back at most 8 files).
pack_out results.json results.md beyond_log.txt 2>&1 | tee -a "$OUT/beyond_log.txt"
[[ ${PIPESTATUS[0]} == 0 ]] || rc=1
exit "$rc"
