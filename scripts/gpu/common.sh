# Shared by the device scripts of scripts/gpu/ (sourced, not run): the Python set-up of a
# bare device machine, the provenance every result records, the GPU monitor, and the
# packing of $OUT into what the device tool brings back (at most 8 files, 2 folders deep).
#
# The sourcing script sets OUT and PYTHON and runs from the repository root.

START=${START:-$(date +%s)}

elapsed() { echo "[$(( $(date +%s) - START )) s]"; }

# setup_python [MODULE]: PYTHONPATH runs the project uninstalled; if MODULE (default
# ml_collections) is missing, the pure-Python wheels carried in .whl/ are installed first.
# An empty MODULE needs nothing beyond jax, flax, optax, orbax and numpy.
setup_python() {
    local module=${1-ml_collections}
    if [[ -n "$module" ]] && ! "$PYTHON" -c "import $module" 2>/dev/null; then
        if ! compgen -G ".whl/*.whl" >/dev/null; then
            echo "error: $module is missing and .whl/ holds no wheels" \
                 "(run scripts/gpu/prepare_carry.sh here and carry .whl)"
            return 2
        fi
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target /tmp/site .whl/*.whl || return 2
        export PYTHONPATH=/tmp/site:.${PYTHONPATH:+:$PYTHONPATH}
    else
        export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
    fi
}

# record_version FILE COMMAND...: what ran where (code version, command, libraries,
# devices, nvidia-smi) into FILE, and its first lines to stdout.
record_version() {
    local file=$1
    shift
    {
        echo "git_commit: $(git rev-parse HEAD 2>/dev/null || echo "${GIT_COMMIT:-unknown}")"
        echo "code_sha256: $(find smh_jax configs scripts train.py eval.py -name '*.py' \
            | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
        echo "command: $*"
        "$PYTHON" -c "import sys, jax, flax, optax, numpy; print('python', \
sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', \
optax.__version__, 'numpy', numpy.__version__, 'devices', jax.devices())"
        command -v nvidia-smi >/dev/null && nvidia-smi
    } > "$file" 2>&1
    head -25 "$file"
}

# start_gpu_monitor FILE SECONDS / stop_gpu_monitor: GPU load while the runs share it.
start_gpu_monitor() {
    command -v nvidia-smi >/dev/null || return 0
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw \
        --format=csv -l "$2" > "$1" 2>&1 &
    GPU_MONITOR_PID=$!
}

stop_gpu_monitor() {
    [[ -n "${GPU_MONITOR_PID:-}" ]] && kill "$GPU_MONITOR_PID" 2>/dev/null
    GPU_MONITOR_PID=
}

# pack_out KEEP...: every file under $OUT except the top-level KEEP names goes into
# $OUT/records.tar.gz (the device brings back at most 8 files); fails if more than 8
# files would remain.
pack_out() {
    local keep=() name
    for name in "$@"; do keep+=(! -path "./$name"); done
    (
        cd "$OUT" || exit 1
        find . -type f ! -path ./records.tar.gz "${keep[@]}" -print0 | sort -z \
            | tar -czf records.tar.gz --null -T - --remove-files || exit 1
        find . -mindepth 1 -type d -empty -delete
        local count
        count=$(find . -type f | wc -l)
        if (( count > 8 )); then
            echo "error: $count files in $OUT, the device brings back at most 8"
            exit 1
        fi
        echo "\$OUT: $(find . -type f | sort | tr '\n' ' ')"
    )
}
