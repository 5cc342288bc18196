r"""SMH's options and neighbouring pools at one setting of HashedNets' MLPs, each under the
protocol of `hashednets_mnist` (its recipe, learning-rate grid, selection on validation
and seeds): where SMH stands against HashNet, and why.

    python scripts/sweep.py --preset=hashednets_mnist_smh_variants --root=/tmp/mnist \
        --set dataset.path=/path/to/mnist --out_dir=docs/results --name=mnist_hashednets
    python scripts/sweep.py --preset=hashednets_mnist_smh_variants:mlp5_1-8 ...

The argument picks the setting: `mlp3_1-64` (default; 3-layer MLP at 1/64, about 12,420
stored variables), `mlp5_1-8` (5-layer MLP at 1/8, about 349,600) or `lenet5_1-8` (LeNet-5
at 1/8, about 53,900; under the protocol of `lenet_mnist` instead: 12 epochs, its grid).
Each net's epochs are dispatched as its protocol preset dispatches them (`steps_per_call`:
LeNet-5 in calls of 10 steps).

Groups at mlp3_1-64:
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
Groups at mlp5_1-8:
  smh                       the library default (n = 1673, M = 105)
  smh side=2000             each virtual row holds two whole 1000-wide kernel rows
                            (n = 2000, M = 88): every kernel's even rows lie in one rank-88
                            row space and its odd rows in another, both shared by all
                            layers (n = 1000 cannot hold the 2.8M weights)
  smh pool=kronecker        sum of Kronecker products
  hashnet                   for reference
Groups at lenet5_1-8:
  smh                       the library default (n = 658, M = 41)
  smh pool=kronecker        sum of Kronecker products
  nn, hashnet               for reference
  (No aligned side: a square virtual matrix whose rows hold whole 500-wide rows of the
  800 x 500 fully connected kernel, n = 500 or 1000, either holds fewer weights than the
  net's 431,080 or leaves over half of A's rows unused.)
Sharing --root with `hashednets_mnist` and `lenet_mnist` reuses their smh, nn and hashnet
groups.
Expected runtime on 2 CPU cores: about 15 minutes (mlp3_1-64); mlp5_1-8 with the shared
root about 20 minutes for side=2000 and 65 minutes for the Kronecker pool (measured
3,870 s alone on the 2 cores; its training step costs 1.8 times the product's at this
size); lenet5_1-8's Kronecker group 105 minutes (on one core).
"""

import os

from smh_jax.errors import UserError
from smh_jax.experiments import sweep_plan


def _mlp3_at_1_64():
    f = 1 / 64
    return "MNIST 3-layer MLP at 1/64: SMH variants", [
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


def _mlp5_at_1_8():
    f = 1 / 8
    return "MNIST 5-layer MLP at 1/8: SMH variants", [
        dict(net="mlp5", method="smh", compression=f),
        dict(net="mlp5", method="smh", compression=f, options=dict(side=2000),
             name="mlp5_smh_side-2000_1-8"),
        dict(net="mlp5", method="smh", compression=f, options=dict(pool="kronecker")),
        dict(net="mlp5", method="hashnet", compression=f),
    ]


def _lenet5_at_1_8():
    f = 1 / 8
    return "MNIST LeNet-5 at 1/8: SMH variants", [
        dict(net="lenet5", method="smh", compression=f),
        dict(net="lenet5", method="smh", compression=f, options=dict(pool="kronecker")),
        dict(net="lenet5", method="nn", compression=f),
        dict(net="lenet5", method="hashnet", compression=f),
    ]


# Each setting: its groups, and the preset beside this file whose protocol they train under.
SETTINGS = {"mlp3_1-64": (_mlp3_at_1_64, "hashednets_mnist.py"),
            "mlp5_1-8": (_mlp5_at_1_8, "hashednets_mnist.py"),
            "lenet5_1-8": (_lenet5_at_1_8, "lenet_mnist.py")}


def get_config(arg=None):
    setting = arg or "mlp3_1-64"
    if setting not in SETTINGS:
        raise UserError(f"--preset hashednets_mnist_smh_variants:{setting}: unknown setting; "
                        f"allowed: {', '.join(SETTINGS)}")
    groups, protocol = SETTINGS[setting]
    _, c = sweep_plan.load_preset_config(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), protocol))
    # Each net is dispatched as the protocol preset dispatches it (speed, not results).
    dispatch = {g["net"]: g["steps_per_call"] for g in c.groups if "steps_per_call" in g}
    c.title, own = groups()
    c.groups = [{"steps_per_call": dispatch[g["net"]], **g} if g["net"] in dispatch else g
                for g in own]
    return c
