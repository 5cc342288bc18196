"""Dense EfficientNet-B0 on ImageNet: the reference every compressed model is compared to.

    python train.py --config=configs/efficientnet_b0_imagenet.py --workdir=/tmp/b0

Recipe: the EfficientNet reference (RMSProp, exponential decay, EMA 0.9999, 350 epochs,
224x224). Expected result: 76.3% top-1 (paper's B0 baseline), 5,288,548 parameters.
Expected runtime: not measured; days on a TPU v3-32 class machine.
Arguments: runlocal.
"""

from smh_jax.training import config_base, recipes


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False)
    c = recipes.efficientnet("b0")
    if args.runlocal:
        recipes.runlocal(c, image_size=64)
    return c
