r"""CIFAR-10 ResNet-32 at 10% of the hashed weights: SMH vs unstructured hashing vs the
Kronecker pool (the comparison of the paper's Table 1, on CIFAR-10).

    python scripts/sweep.py --preset=cifar10_resnet32_pools --root=/tmp/r32_pools --parallel=5

Five runs of one recipe (`configs/resnet32_cifar10_smh.py:fast,epochs=40`, seed 0),
each with 10% of the 461,882 hashed weights: SMH (the product pool `A @ B`), the
Kronecker pool, and hashing with K = 1, 2 and 10 hashes per weight. Every run evaluates
every 970 steps (10 epochs).

Expected result (the paper's Table 1, EfficientNet-B2 on ImageNet at equal size): SMH
above every hashing baseline. Expected runtime: not yet measured.
"""

import ml_collections

TRAIN_CONFIG = "configs/resnet32_cifar10_smh.py:fast,epochs=40"
COMMON = ["eval_every_steps=970", "seed=0", "smh.fraction=0.1"]


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10 ResNet-32 at 10%: SMH vs hashing vs Kronecker"
    c.references = []
    runs = [dict(name="resnet32_smh10_s0", config=TRAIN_CONFIG, overrides=COMMON,
                 labels=dict(method="smh", fraction=0.1))]
    pools = (("kronecker", ["smh.pool=kronecker"]),
             ("hash1", ["smh.pool=hash", "smh.num_hashes=1"]),
             ("hash2", ["smh.pool=hash", "smh.num_hashes=2"]),
             ("hash10", ["smh.pool=hash", "smh.num_hashes=10"]))
    for variant, pool in pools:
        runs.append(dict(name=f"resnet32_{variant}_s0", config=TRAIN_CONFIG,
                         overrides=[*COMMON, *pool],
                         labels=dict(method="smh", fraction=0.1, variant=variant)))
    c.runs = runs
    return c
