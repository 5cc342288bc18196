"""ResNet-50 on ImageNet with SMH at 25% of the variables (paper Figure 3).

    python train.py --config=configs/resnet50_imagenet_smh.py --workdir=/tmp/r50_smh25

Needs imagenet2012 prepared for TFDS (tfds build imagenet2012 with the manual download).
Recipe: Goyal et al. (batch 1024, LR 0.4 with 5 warmup epochs, cosine, 90 epochs),
bfloat16. Expected result (paper Figure 3): SMH above the width multiplier at every size;
at 70% top-1 SMH models are half the size of width-multiplier ones. Expected runtime:
not measured; about a day on 8 modern accelerators (the dense ResNet-50 recipe's time).
Arguments: runlocal (a few CPU steps at 64x64, for smoke tests).
"""

from smh_jax.training import config_base, recipes


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False)
    c = recipes.imagenet_resnet("resnet50", fraction=0.25)
    if args.runlocal:
        recipes.runlocal(c, image_size=64)
    return c
