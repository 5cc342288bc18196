r"""CIFAR-10 ResNet-32: SMH vs width multiplier vs dense at matched sizes (the paper's
Sec. 4.5 and Figure 6).

    python scripts/sweep.py --preset=cifar10_resnet32 --root=/tmp/r32 --parallel=6
    python scripts/sweep.py --preset=cifar10_resnet32 --root=/tmp/r32 --parallel=6 \
        --set dataset.source=npz --set dataset.path=/data/cifar10.npz   # CIFAR-10 from an .npz

Six runs of one recipe, `configs/resnet32_cifar10_smh.py:fast,epochs=50` (batch 512,
Nesterov SGD, one-cycle learning rate peaking at 0.4, weight decay 5e-4, label smoothing
0.1, bfloat16 compute), seed 0: the dense model; SMH at 25%, 10% and 5% of the
variables; width multipliers matched to SMH at 25% and 10%. Every run evaluates every
970 steps (10 epochs), so a stopped run still reports an accuracy. Data: the config's
default, TFDS `cifar10` (or an .npz, as above).

Expected result (the paper): dense 92.49% (He et al.); SMH at 25% (about 115K
variables) no loss against it; SMH at 10% (46-50K) above 90%; SMH above the width
multiplier at both sizes. Expected runtime: not yet measured.
"""

import ml_collections

TRAIN_CONFIG = "configs/resnet32_cifar10_smh.py:fast,epochs=50"
COMMON = ["eval_every_steps=970", "seed=0"]


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10 ResNet-32: accuracy vs trainable variables"
    # Published points, read from the paper's text (not measured here).
    c.references = [
        dict(label="paper: dense ResNet-32, 92.49% (He et al.)", params=0.46e6,
             accuracy=92.49, marker="D"),
        dict(label="paper: SMH 25% (~115K), no loss vs dense", params=115e3,
             accuracy=92.49, marker="*"),
        dict(label="paper: SMH 10% (46-50K), above 90%", params=48e3, accuracy=90.0,
             marker="^"),
    ]
    runs = [dict(name="resnet32_dense_s0", config=TRAIN_CONFIG,
                 overrides=[*COMMON, "smh.fraction=0"], labels=dict(method="dense"))]
    for percent, fraction in (("25", 0.25), ("10", 0.1), ("5", 0.05)):
        runs.append(dict(name=f"resnet32_smh{percent}_s0", config=TRAIN_CONFIG,
                         overrides=[*COMMON, f"smh.fraction={fraction}"],
                         labels=dict(method="smh", fraction=fraction)))
    for percent, fraction in (("25", 0.25), ("10", 0.1)):
        # Dense, as thin as it must be to have as many parameters as SMH at `fraction`.
        runs.append(dict(name=f"resnet32_width{percent}_s0", config=TRAIN_CONFIG,
                         overrides=[*COMMON, "smh.fraction=0"],
                         match_width=[f"smh.fraction={fraction}"],
                         labels=dict(method="width", fraction=fraction)))
    c.runs = runs
    return c
