r"""HashedNets' Figure 2: the 3-layer MNIST MLP at 1/64 ... 1 of its parameters, for nn,
lrd, hashnet and smh, one seed.

    python scripts/sweep.py --preset=hashednets_mnist_curve --root=/tmp/mnist --parallel=2 \
        --set dataset.path=/path/to/mnist --out_dir=docs/results --name=mnist_hashednets

The protocol of `hashednets_mnist` (the same recipe, learning-rate grid and selection on
validation), seed 0 only. Sharing its --root reuses the 1/8 and 1/64 groups that preset
trained. Expected result (published, HashNet): 2.79, 2.02, 1.64, 1.45, 1.42, 1.34, 1.38 %
from 1/64 to 1. Measured runtime on 2 CPU cores with --parallel=2: 93 minutes for all 28
groups from an empty root (docs/results/mnist_hashednets.md).
"""

import os

from smh_jax.experiments import published, sweep_plan


def get_config(arg=None):
    del arg
    # The protocol of `hashednets_mnist`, the preset beside this file.
    _, c = sweep_plan.load_preset_config(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "hashednets_mnist.py"))
    c.title = "MNIST 3-layer MLP: test error vs compression"
    c.seeds = (0,)
    c.groups = [dict(net="mlp3", method=m, compression=f)
                for f in published.FACTORS for m in ("nn", "lrd", "hashnet", "smh")]
    return c
