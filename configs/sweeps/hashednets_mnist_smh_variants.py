r"""Why SMH stands where it does at 1/64 of HashedNets' 3-layer MLP: SMH's options and
neighbouring pools, each under the protocol of `hashednets_mnist` (its recipe, learning-
rate grid, selection on validation and seeds).

    python scripts/sweep.py --preset=hashednets_mnist_smh_variants --root=/tmp/mnist \
        --set dataset.path=/path/to/mnist --out_dir=docs/results --name=mnist_hashednets

Groups (3-layer MLP at 1/64, about 12,420 stored variables):
  smh                       the library default: product pool A @ B (n = 892, M = 7),
                            learnable per-layer scale stored as a norm
  smh scale direct          the paper's plain learnable scale
  smh learn_scale=False     frozen per-layer scales (the paper's Table-3 ablation)
  smh pool=kronecker        sum of Kronecker products
  smh pool=meta             product pool + unsigned hash pool, summed, half the budget
                            each
  smh side=1000             rows of the virtual matrix aligned with the first layer's
                            kernel rows (n = 1000; M = 6: 12,004 variables, 3% fewer)
  hashnet                   HashedNets (per-layer signed hashing), for reference
Sharing --root with `hashednets_mnist` reuses its smh and hashnet groups.
Expected runtime: about 15 minutes on 2 CPU cores.
"""

import os

from smh_jax.experiments import sweep_plan


def get_config(arg=None):
    del arg
    # The protocol of `hashednets_mnist`, the preset beside this file.
    _, c = sweep_plan.load_preset_config(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "hashednets_mnist.py"))
    c.title = "MNIST 3-layer MLP at 1/64: SMH variants"
    f = 1 / 64
    c.groups = [
        dict(net="mlp3", method="smh", compression=f),
        dict(net="mlp3", method="smh", compression=f,
             options=dict(scale_parameterization="direct")),
        dict(net="mlp3", method="smh", compression=f, options=dict(learn_scale=False)),
        dict(net="mlp3", method="smh", compression=f, options=dict(pool="kronecker")),
        # Half the budget each; side 1035 sizes the product half (M = 3) to its share.
        dict(net="mlp3", method="smh", compression=f,
             options=dict(pool="meta", meta_pools=("product", "hash"), side=1035),
             name="mlp3_smh_meta-product-hash_1-64"),
        # n = 1000 makes each first-layer kernel row one virtual row; 2nM comes in steps of
        # 2,000, so the closest size below the budget is M = 6 (this factor gives it).
        dict(net="mlp3", method="smh", compression=0.01509, options=dict(side=1000),
             name="mlp3_smh_side-1000_1-64"),
        dict(net="mlp3", method="hashnet", compression=f),
    ]
    return c
