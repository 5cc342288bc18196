"""MobileNetV2 on ImageNet with SMH at 50% of the variables (paper Figure 5).

    python train.py --config=configs/mobilenet_v2_imagenet_smh.py --workdir=/tmp/mnv2

Expected result (paper Figure 5): SMH above the width multiplier at matched size.
Expected runtime: not measured. Arguments: runlocal.
"""

from smh_jax.training import config_base, recipes


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False)
    c = recipes.mobilenet("mobilenet_v2", fraction=0.5)
    if args.runlocal:
        recipes.runlocal(c, image_size=64)
    return c
