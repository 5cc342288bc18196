"""ResNet-56 on CIFAR-10 with SMH at 25% of the variables.

    python train.py --config=configs/resnet56_cifar10_smh.py --workdir=/tmp/r56_smh25

Expected result: the paper reports ResNet-32 only; at 25% expect close to the dense
93.03% (He et al.). Expected runtime: not measured; minutes on one modern GPU.
Config arguments as resnet32_cifar10_smh.py.
"""

from smh_jax.training import recipes


def get_config(arg=None):
    return recipes.cifar_experiment(56, arg, fraction=0.25)
