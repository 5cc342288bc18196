r"""CIFAR-10 ResNet-32: the per-layer scale's parameterization (docs/results/scale_stability.md).

    python scripts/sweep.py --preset=cifar10_resnet32_scale --root=/tmp/r32_scale --parallel=7

The setting where a plain learnable per-layer scale diverges: batch 512, Nesterov SGD,
one-cycle learning rate peaking at 0.4, 30 epochs
(`configs/resnet32_cifar10_smh.py:fast,epochs=30`), seed 0. Seven runs: the dense model;
SMH at 25% and 10% with the default learned scales (`norm` parameterization), with
frozen scales (`smh.learn_scale=False`) and with plain learned scales
(`smh.scale_parameterization=direct`). Non-finite steps are skipped and counted
(`nonfinite=skip`), so a diverging run still finishes and reports.

Expected result: `direct` diverges (non-finite steps, chance accuracy); `norm` trains
stably and ends at or above the frozen scales. Expected runtime: not yet measured.
"""

import ml_collections

TRAIN_CONFIG = "configs/resnet32_cifar10_smh.py:fast,epochs=30"
COMMON = ["nonfinite=skip", "seed=0"]


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10 ResNet-32: per-layer scale parameterization"
    c.references = []
    runs = [dict(name="resnet32_dense_s0", config=TRAIN_CONFIG,
                 overrides=[*COMMON, "smh.fraction=0"], labels=dict(method="dense"))]
    for percent, fraction in (("25", 0.25), ("10", 0.1)):
        runs.append(dict(name=f"resnet32_smh{percent}_s0", config=TRAIN_CONFIG,
                         overrides=[*COMMON, f"smh.fraction={fraction}"],
                         labels=dict(method="smh", fraction=fraction)))
    for variant, scale in (("frozen", "smh.learn_scale=False"),
                           ("direct", "smh.scale_parameterization=direct")):
        for percent, fraction in (("25", 0.25), ("10", 0.1)):
            runs.append(dict(name=f"resnet32_{variant}{percent}_s0", config=TRAIN_CONFIG,
                             overrides=[*COMMON, f"smh.fraction={fraction}", scale],
                             labels=dict(method="smh", fraction=fraction,
                                         variant=f"{variant}{percent}")))
    c.runs = runs
    return c
