"""Dense ResNet-56 on CIFAR-10 (He et al. 2016 Sec. 4.2), twin of resnet56_cifar10_smh.py.

    python train.py --config=configs/resnet56_cifar10.py --workdir=/tmp/r56_dense

Expected result: 93.03% top-1 (He et al.), 0.85M parameters. Expected runtime: not
measured; minutes on one modern GPU. Config arguments as resnet32_cifar10.py.
"""

from smh_jax.training import recipes


def get_config(arg=None):
    return recipes.cifar_experiment(56, arg, fraction=None)
