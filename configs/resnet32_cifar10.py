"""Dense ResNet-32 on CIFAR-10: the uncompressed twin of resnet32_cifar10_smh.py.

    python train.py --config=configs/resnet32_cifar10.py --workdir=/tmp/r32_dense
    python train.py --config=configs/resnet32_cifar10.py --config.model.width_multiplier=0.5 ...

Recipe: He et al. 2016 Sec. 4.2 (see smh_jax/training/recipes.py); `:fast` for the GPU
sweep recipe. Expected result: 92.49% top-1 (He et al., 7.51% error), 0.46M parameters.
The width multiplier override is the paper's main baseline. Expected runtime: not
measured; a few minutes on one H200 (about 1 s an epoch).
"""

from smh_jax.training import recipes


def get_config(arg=None):
    return recipes.cifar_experiment(32, arg, fraction=None)
