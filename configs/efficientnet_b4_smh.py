"""EfficientNet-B4 compressed by SMH to B0's size (5,288,548 trainable variables).

    python train.py --config=configs/efficientnet_b4_smh.py --workdir=/tmp/b4_smh

The design card's headline command. Needs imagenet2012 prepared for TFDS. The size is
given as target_params (total trainable variables, BatchNorm and scales included), so
the compressed B4 has exactly as many variables as the dense B0 it is compared to.
Recipe: the EfficientNet reference at B4's 380x380 (see recipes.efficientnet).
Expected result (paper Sec. 4): over 3 points above B0's 76.3% top-1 at equal size.
Expected runtime: not measured; B4's training time (SMH adds one n x M x n matrix
product per step, under 3% here), days on a TPU pod slice.
Arguments: runlocal (a few CPU steps at 64x64), fraction=F (hash to F x N instead).
"""

from smh_jax.training import config_base, recipes

B0_PARAMS = 5_288_548


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False, fraction=0.0)
    if args.fraction:
        c = recipes.efficientnet("b4", fraction=args.fraction)
    else:
        c = recipes.efficientnet("b4", target_params=B0_PARAMS)
    if args.runlocal:
        recipes.runlocal(c, image_size=64)
    return c
