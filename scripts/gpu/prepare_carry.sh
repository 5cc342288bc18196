#!/usr/bin/env bash
# Prepares what a GPU device command carries besides the repo: the wheels of the pure
# Python packages the device machine lacks (.whl/) and the CIFAR-10 npz (data_local/).
# Both folders are git-ignored; the device `run` then passes carry=["data_local", ".whl"].
#
#   bash scripts/gpu/prepare_carry.sh            # wheels + data (idempotent)
#   bash scripts/gpu/prepare_carry.sh --no-data  # wheels only
#
# On the device:  python3 -m pip install -q --no-index --no-deps --no-compile \
#   --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:.
# (scripts/gpu/*.sh do this themselves.) Extra wheels: EXTRA_WHEELS="pkg==1.0 other==2.0".
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
NPZ_SRC=${NPZ_SRC:-../shared/data/cifar10_jpeg.npz}
NPZ_SHA256=837ac5ae8a4dc8be5d4602060ae6d3db6d92d286909c3eb0796df7bc0409b3a3
# The device has jax, flax, optax, orbax, absl-py, numpy, pillow, matplotlib but not
# ml_collections (which imports yaml). PyYAML is a compiled wheel: pick the device's
# CPython 3.12 manylinux build.
WHEELS="ml_collections==1.1.0 PyYAML==6.0.2 ${EXTRA_WHEELS:-}"

mkdir -p .whl
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d .whl $WHEELS
ls -l .whl

if [[ "${1:-}" != "--no-data" ]]; then
    mkdir -p data_local
    if [[ ! -f data_local/cifar10_jpeg.npz ]]; then
        cp "$NPZ_SRC" data_local/cifar10_jpeg.npz
        chmod u+w data_local/cifar10_jpeg.npz
    fi
    echo "$NPZ_SHA256  data_local/cifar10_jpeg.npz" | sha256sum -c -
fi

# A device call carries at most 64 MiB: repo files (tracked + untracked, not ignored)
# plus the carried folders.
repo_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 -r du -cb 2>/dev/null \
    | tail -1 | cut -f1)
carried_bytes=$(du -cb .whl $([[ -d data_local ]] && echo data_local) | tail -1 | cut -f1)
total=$((repo_bytes + carried_bytes))
echo "carry size: repo ${repo_bytes} B + carried ${carried_bytes} B = $((total / 1048576)) MiB" \
     "(limit 64 MiB)"
if (( total > 64 * 1048576 )); then
    echo "error: carry of $((total / 1048576)) MiB exceeds the 64 MiB limit" >&2
    exit 2
fi
