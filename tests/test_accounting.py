"""Accounting: the same exact counts and the same size errors for every pool."""

import jax
import numpy as np
import pytest

from smh_jax.core import pools
from smh_jax.core.accounting import accounting, format_accounting
from smh_jax.core.layout import build_layout
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import init_params
from smh_jax.errors import UserError

POOLS = [("product", {}), ("kronecker", {}), ("hash", {"num_hashes": 2}),
         ("hash", {"num_hashes": 10}), ("meta", {"meta_combine": "sum"}),
         ("meta", {"meta_pools": ("product", "hash"), "meta_combine": "prod"})]


def _dense():
    rng = np.random.default_rng(0)
    return {
        "conv": {"kernel": rng.normal(0, 0.1, (3, 3, 16, 32)).astype(np.float32)},
        "bn": {"scale": np.ones(32, np.float32), "bias": np.zeros(32, np.float32)},
        "head": {"kernel": rng.normal(0, 0.1, (32, 10)).astype(np.float32),
                 "bias": np.zeros(10, np.float32)},
    }


N = 3 * 3 * 16 * 32 + 32 * 10 + 10  # hashed: the conv and the head
UNHASHED = 64  # BatchNorm scale and bias


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _layout(kind, extra, modifiers=("scale",), **size):
    size = size or {"fraction": 0.2}
    return build_layout(_dense(), SMHOptions(pool=kind, modifiers=modifiers, **size, **extra),
                        frozenset({"bn"}))


@pytest.mark.parametrize("kind,extra", POOLS)
def test_counts_are_the_variables_that_exist(kind, extra):
    layout = _layout(kind, extra, modifiers=("scale", "learned_scalar"))
    params = init_params(jax.random.key(0), layout, _dense())
    info = accounting(params)
    assert info["hashed_weights"] == N
    assert info["factors"] == _count(params.pool) == layout.pool.num_variables
    assert info["scales"] == _count(params.modifiers) == 2 * len(layout.hashed)
    assert info["unhashed"] == _count(params.unhashed) == UNHASHED
    assert info["trainable"] == _count(params) == info["factors"] + info["scales"] + UNHASHED
    assert info["dense_params"] == N + UNHASHED == _count(_dense())
    assert info["fraction"] == pytest.approx(info["trainable"] / info["dense_params"])
    assert info["factor_fraction"] == pytest.approx(info["factors"] / N)
    assert info["factors"] >= 0.2 * N  # the pool reaches the requested fraction of N
    assert info["pool"] == layout.pool.describe() and info["pool"]["pool"] == kind
    assert info["requested"] == {"fraction": 0.2}
    assert [t["path"] for t in info["tensors"]] == ["conv/kernel", "head/kernel", "head/bias"]
    # The same from shapes alone (what the trainer logs before any compute).
    abstract = jax.eval_shape(lambda: init_params(jax.random.key(0), layout, _dense()))
    assert accounting(abstract) == info
    text = format_accounting(info)
    assert f"SMH {kind} pool" in text and f"{info['trainable']:>14,}" in text


def test_product_reports_n_and_m_and_kronecker_its_side():
    info = accounting(init_params(jax.random.key(0), _layout("product", {}), _dense()))
    n = int(np.ceil(np.sqrt(N)))
    assert info["n"] == n and info["M"] == int(np.ceil(0.2 * N / (2 * n)))
    info = accounting(init_params(jax.random.key(0), _layout("kronecker", {}), _dense()))
    side = pools.kronecker_side(N)
    assert info["pool"]["side"] == side and info["n"] == side * side and info["M"] is None


@pytest.mark.parametrize("kind,extra", POOLS)
def test_target_params_is_reached_within_one_unit_of_the_pool(kind, extra):
    target = 2000
    layout = _layout(kind, extra, target_params=target)
    info = accounting(init_params(jax.random.key(0), layout, _dense()))
    unit, _ = pools.smallest_pool(kind, N, SMHOptions(fraction=1.0, pool=kind, **extra))
    # Every pool rounds up to whole units; the meta pool rounds each of its sub-pools.
    slack = sum(pools.smallest_pool(p.kind, N, SMHOptions(fraction=1.0, **extra))[0]
                for p in layout.pool.pools) if kind == "meta" else unit
    assert target <= info["trainable"] < target + slack
    assert info["requested"] == {"target_params": float(target)}
    if kind == "hash":  # the hash pool takes exactly the budget
        assert info["trainable"] == target


@pytest.mark.parametrize("kind,extra", POOLS)
def test_too_small_a_fraction_names_the_smallest_one_for_every_pool(kind, extra):
    options = SMHOptions(fraction=1.0, pool=kind, **extra)
    minimum, _ = pools.smallest_pool(kind, N, options)
    smallest = pools.format_exact(pools.smallest_fraction(minimum, N))
    with pytest.raises(UserError, match=f"smallest allowed fraction is {smallest}$"):
        _layout(kind, extra, fraction=minimum / N * 0.99)
    layout = _layout(kind, extra, fraction=float(smallest))  # the named fraction builds
    assert accounting(init_params(jax.random.key(0), layout, _dense()))["factors"] >= minimum


@pytest.mark.parametrize("kind,extra", POOLS)
def test_target_params_below_what_the_model_keeps_is_an_error(kind, extra):
    with pytest.raises(UserError, match="not above the 67 unhashed parameters and scales .*"
                                        "allowed: more than 67"):
        _layout(kind, extra, target_params=UNHASHED + 3)  # 64 BatchNorm + 3 scales
    with pytest.raises(UserError, match=f"below the smallest {kind} pool"):
        _layout(kind, extra, target_params=UNHASHED + 3 + 1)
