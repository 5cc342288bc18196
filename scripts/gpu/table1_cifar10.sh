#!/usr/bin/env bash
# Issue 6: the paper's Table 1 comparison on CIFAR-10 ResNet-32 at 10% size as ONE device
# command (one H200, at most 10 minutes): SMH (product pool), unstructured hashing with
# K = 1, 2, 10 and the Kronecker pool, every pool at fraction 0.1 of the hashed weights,
# the same `fast` recipe (40 epochs) for all, 5 runs at once: the sweep preset
# cifar10_resnet32_table1 through scripts/gpu/cifar10_sweep.sh (same knobs, same $OUT).
# docs/results/benchmark.md gives the device command and the arithmetic.
#
#   Prepare here:  bash scripts/gpu/prepare_carry.sh        (.whl/ and data_local/)
#   Device:        GIT_COMMIT=<sha> bash scripts/gpu/table1_cifar10.sh
#                  with carry ["data_local", ".whl"]
#   CPU check:     SMOKE=1 OUT=/tmp/t1_smoke PYTHON=/work/venv/bin/python \
#                      bash scripts/gpu/table1_cifar10.sh
PRESET=cifar10_resnet32_table1 PARALLEL=${PARALLEL:-5} \
    exec bash "$(dirname "$0")/cifar10_sweep.sh"
