"""Published MNIST figures: HashedNets (Chen et al., ICML 2015) and the Caffe LeNets.

Test error (%) of each method at each compression factor (stored / original
parameters), as the papers give them: Tables 1-2 (1/8, 1/64) and Figure 2 (the 3-layer
and 5-layer curves, read from the vector drawing; they agree with the tables to 0.01).
Methods are named as in smh_jax.experiments.methods; RER and DK (not implemented here)
are left out. '>10' points of the figure are left out too. Reference data for reports,
never a result of this code.
"""

from __future__ import annotations

FACTORS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)

_CURVES = {
    ("mlp3", "hashnet"): (2.79, 2.02, 1.64, 1.45, 1.42, 1.34, 1.38),
    ("mlp3", "nn"): (6.28, 3.75, 2.18, 1.69, 1.51, 1.42, 1.37),
    ("mlp3", "lrd"): (None, None, 4.21, 1.89, 1.48, 1.36, 1.32),
    ("mlp5", "hashnet"): (1.99, 1.64, 1.35, 1.22, 1.19, 1.16, 1.11),  # 1/64: Table 2 (figure 2.00)
    ("mlp5", "nn"): (2.69, 1.81, 1.49, 1.35, 1.23, 1.21, 1.15),
    ("mlp5", "lrd"): (None, None, 3.98, 1.77, 1.28, 1.26, 1.12),
}
# Tables 1-2 give 1/64 exactly (the figure's curve agrees): 3-layer LRD 28.99, 5-layer 28.11.
_TABLE_ONLY = {("mlp3", "lrd", 1 / 64): 28.99, ("mlp5", "lrd", 1 / 64): 28.11}
# Dense references: LeNets from Han et al. (2015), the Caffe models.
_DENSE = {"lenet_300_100": 1.64, "lenet5": 0.80}


def references() -> list[dict]:
    """[{net, method, compression, test_error}] for every published point."""
    out = []
    for (net, method), errors in _CURVES.items():
        for factor, error in zip(FACTORS, errors, strict=True):
            if error is not None:
                out.append(dict(net=net, method=method, compression=factor,
                                test_error=error))
    for (net, method, factor), error in _TABLE_ONLY.items():
        out.append(dict(net=net, method=method, compression=factor, test_error=error))
    for net, error in _DENSE.items():
        out.append(dict(net=net, method="dense", compression=1.0, test_error=error))
    return out
