"""ResNet-32 on CIFAR-10 with SMH at 25% of the variables (paper Sec. 4.5, Figure 6).

    python train.py --config=configs/resnet32_cifar10_smh.py --workdir=/tmp/r32_smh25
    python train.py --config=configs/resnet32_cifar10_smh.py --config.smh.fraction=0.1 ...
    python train.py \\
        --config=configs/resnet32_cifar10_smh.py:fast,npz=../shared/data/cifar10_jpeg.npz ...

Recipe: He et al. (164 epochs, SGD 0.1, /10 at epochs 82 and 123, batch 128); `:fast` is
the 60-epoch one-cycle recipe used for GPU sweeps (docs/results/cifar10_resnet32.md).
Expected result (paper): no loss against the dense 92.49% at 25% (about 115K variables);
above 90% at 10%. Expected runtime: not measured on this recipe; the dense ResNet-32
trains at about 50,000 images/s on one H200 (about 1 s an epoch), so a few minutes.
"""

from smh_jax.training import recipes


def get_config(arg=None):
    return recipes.cifar_experiment(32, arg, fraction=0.25)
