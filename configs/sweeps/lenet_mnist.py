r"""The Caffe LeNets on MNIST: LeNet-300-100 (784-300-100-10) and LeNet-5 (conv 20, conv
50, fc 500), dense and compressed to 1/8 and 1/64 by nn, hashnet and smh.

    python scripts/sweep.py --preset=lenet_mnist --root=/tmp/mnist --parallel=2 \
        --set dataset.path=/path/to/mnist --out_dir=docs/results --name=mnist_hashednets

The protocol of `hashednets_mnist` (SGD, momentum 0.9, batch 100, cosine, the learning
rate chosen on validation from one grid) with 12 epochs (LeNet-5's convolutions dominate
the time on a CPU); no dropout (the Caffe models have none). `--parallel=2` trains two
groups at once. LeNet-5's groups train in calls of 10 unrolled steps (`steps_per_call`;
docs/results/mnist_hashednets.md measures why).

Arguments (`--preset=lenet_mnist:net=lenet_300_100,weight_decay=0.0005`): `net` trains
one of the two nets' groups only; `weight_decay` adds L2 to every method's gradients (the
Caffe LeNets' solvers use 5e-4; the default protocol, like HashedNets', has none). A
different recipe is a different group: results go to their own --root.

Expected result (published, dense): LeNet-300-100 1.64%, LeNet-5 0.80% test error.
Measured runtime on 2 CPU cores with --parallel=2: LeNet-300-100's seven groups 7
minutes. A LeNet-5 group trains 76 run-epochs (7 rates x 4, then 2 x 12 and 2 x 12):
measured 11 to 98 minutes per group on one core (nn at 1/64 the shortest, hashnet the
longest), about 4 hours for LeNet-5's seven groups with --parallel=2. Those walls were
measured with flax's window max pool (`max_pool="window"`); LeNet-5's default, pooling by
tiles, makes a step 1.3 times faster on synthetic data; at that step the five groups that
train at the full model's size still need at least 75 minutes with --parallel=2 (an
estimate, docs/results/mnist_hashednets.md; not a measured preset).
"""

import os

from smh_jax.errors import UserError
from smh_jax.experiments import sweep_plan
from smh_jax.training import config_base

NETS = ("lenet_300_100", "lenet5")


def get_config(arg=None):
    args = config_base.parse_arg(arg, net="", weight_decay=0.0)
    if args.net and args.net not in NETS:
        raise UserError(f"lenet_mnist: net={args.net!r} is not one of {', '.join(NETS)}")
    if args.weight_decay < 0:
        raise UserError(f"lenet_mnist: weight_decay={args.weight_decay} must be >= 0")
    # The protocol of `hashednets_mnist`, the preset beside this file.
    _, c = sweep_plan.load_preset_config(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "hashednets_mnist.py"))
    c.title = "MNIST, the Caffe LeNets"
    c.recipe.epochs = 12
    c.search_epochs = 4
    c.learning_rates = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    c.recipe.weight_decay = args.weight_decay  # 0 (the default) is the protocol's recipe
    groups = []
    for net in [args.net] if args.net else NETS:
        # LeNet-5's convolution gradients run several times slower inside a loop body on
        # XLA:CPU: calls of 10 unrolled steps keep them out of one (resident.train_runs).
        # The MLP trains faster in the scanned epoch.
        dispatch = {"steps_per_call": 10} if net == "lenet5" else {}
        groups.append(dict(net=net, method="dense", compression=1.0, **dispatch))
        for compression in (1 / 8, 1 / 64):
            groups += [dict(net=net, method=m, compression=compression, **dispatch)
                       for m in ("nn", "hashnet", "smh")]
    c.groups = groups
    return c
