r"""HashedNets' MNIST Tables 1-2: the 3-layer (784-1000-10) and 5-layer (784-1000-1000-
1000-10) MLPs at 1/8 and 1/64 of their parameters, every method at the same stored size.

    python scripts/sweep.py --preset=hashednets_mnist --root=/tmp/mnist \
        --set dataset.path=/path/to/mnist --out_dir=docs/results --name=mnist_hashednets

Data: the four MNIST IDX files (raw or .gz) in `dataset.path` (default `data/mnist`);
50,000 training images, 10,000 held out from them for validation (fixed seed), the
10,000 test images. Methods (smh_jax/experiments/methods.py): dense; nn (hidden layers
narrowed); lrd (low rank, one factor fixed random, as published) and lrd_learned (both
factors learned); hashnet (HashedNets: per-layer signed hashing); smh (the product pool).

Protocol, the same for every method: SGD with momentum 0.9, batch 100, a 1-epoch linear
warmup then cosine decay, 20 epochs, dropout 0.25 on the input and after each hidden
layer (the MLPs' own); the learning rate chosen from one grid (0.003 ... 10, half-decade
steps): 5-epoch runs of every rate from seed 0, then the two best on validation for 20
epochs from seed 0, the better on validation wins; then seeds 1 and 2 at that rate (the
next smaller rate if a seed diverges); test error reported at the best-validation epoch
(as published) and at the last. No weight decay (HashedNets used none);
`--set 'weight_decays=(0,5e-5,5e-4)'` searches L2 coefficients jointly with the rates, each
method choosing its own pair on validation (three times the search runs; the two best of
all pairs after the short search are the finalists; another --root, since a searched decay
makes another group).

Expected result (published, test error %): HashNet 1.45 / 1.22 at 1/8 and 2.79 / 1.99 at
1/64 (3-layer / 5-layer); NN 1.69 / 1.35 and 6.28 / 2.69. Measured runtime on 2 CPU cores
(docs/results/mnist_hashednets.md): the 3-layer groups 40 minutes, the 5-layer groups
2 h 27 min (HashNet and SMH 22 to 42 minutes each); 3 h 8 min in all, well over 90
minutes there: ten of the groups train every step at the full model's size.
"""

import ml_collections

from smh_jax.experiments import published

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
COMPRESSED = ("nn", "lrd", "lrd_learned", "hashnet", "smh")


def mnist_dataset():
    return dict(source="idx", path="data/mnist", name="mnist", image_size=28, augment="none")


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.kind = "resident"
    # Plot panels read "MNIST: <net>"; the collection covers every net in the root.
    c.title = "MNIST"
    c.dataset = mnist_dataset()
    c.splits = ("train", "validation", "test")
    c.recipe = dict(epochs=20, batch_size=100, momentum=0.9, warmup_epochs=1.0)
    c.search_epochs = 5
    c.learning_rates = LEARNING_RATES
    c.weight_decays = ()  # none searched; --set 'weight_decays=(0,5e-5,5e-4)' searches
    c.seeds = (0, 1, 2)
    groups = []
    for net in ("mlp3", "mlp5"):
        groups.append(dict(net=net, method="dense", compression=1.0))
        for compression in (1 / 8, 1 / 64):
            groups += [dict(net=net, method=m, compression=compression) for m in COMPRESSED]
    c.groups = groups
    c.references = published.references()
    return c
