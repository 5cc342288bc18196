"""Pools: sizing, exact formulas for arbitrary variable values, init statistics, gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smh_jax.core import pools
from smh_jax.core.options import SMHOptions
from smh_jax.errors import UserError


def _options(**kw):
    return SMHOptions(fraction=0.5, **kw)


@given(st.integers(2, 10**7), st.floats(1e-4, 1.0))
def test_product_pool_is_the_smallest_that_reaches_the_target(num_weights, fraction):
    side = math.isqrt(num_weights - 1) + 1
    target = fraction * num_weights
    if target < 2 * side:
        with pytest.raises(UserError, match="smallest allowed fraction is"):
            pools.make_pool("product", num_weights, target, _options())
        return
    pool = pools.make_pool("product", num_weights, target, _options())
    assert pool.side == side and side**2 >= num_weights > (side - 1) ** 2  # n = ceil(sqrt N)
    assert pool.num_variables == 2 * pool.rank * pool.side
    assert 2 * pool.rank * side >= target > 2 * (pool.rank - 1) * side  # M = ceil(T / 2n)


def test_too_small_fraction_names_the_minimum():
    with pytest.raises(UserError) as e:
        pools.make_pool("product", 10_000, 0.001 * 10_000, _options())
    # n = 100: one rank needs 200 variables = 0.02 of N.
    assert "0.02" in str(e.value) and "M = 1" in str(e.value)


@given(st.integers(2, 10**7), st.floats(1e-3, 1.0))
def test_kronecker_sizing(num_weights, fraction):
    target = fraction * num_weights
    side = math.ceil(num_weights**0.25)
    while side**4 < num_weights:
        side += 1
    while (side - 1) ** 4 >= num_weights:
        side -= 1
    if target < 2 * side * side:
        with pytest.raises(UserError, match="one replica"):
            pools.make_pool("kronecker", num_weights, target, _options())
        return
    pool = pools.make_pool("kronecker", num_weights, target, _options())
    assert pool.side == side and pool.virtual_size >= num_weights
    assert pool.num_variables >= target > pool.num_variables - 2 * side * side


def _random_params(pool, seed):
    """Arbitrary (not init-distributed) values for every pool variable."""
    shapes = jax.eval_shape(lambda: pool.init(jax.random.key(0), 1.0, False))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [rng.uniform(-3, 3, leaf.shape).astype(np.float32)
                                        for leaf in leaves])


@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**31))
def test_product_virtual_is_a_times_b(side, rank, seed):
    pool = pools.ProductPool(side=side, rank=rank)
    params = _random_params(pool, seed)
    expected = (params["a"].astype(np.float64) @ params["b"].astype(np.float64)).reshape(-1)
    np.testing.assert_allclose(pool.virtual(params, jnp.float32), expected, rtol=1e-5, atol=1e-4)
    start = seed % (side * side)
    stop = start + (seed // 7) % (side * side - start) + 1
    np.testing.assert_allclose(pool.virtual_range(params, start, stop, jnp.float32),
                               expected[start:stop], rtol=1e-5, atol=1e-4)


@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31))
def test_kronecker_virtual_is_a_sum_of_krons(side, replicas, seed):
    pool = pools.KroneckerPool(side=side, replicas=replicas)
    params = _random_params(pool, seed)
    expected = sum(np.kron(params["left"][i].astype(np.float64), params["right"][i])
                   for i in range(replicas))
    np.testing.assert_allclose(pool.virtual(params, jnp.float32), expected.reshape(-1),
                               rtol=1e-5, atol=1e-4)


@given(st.integers(1, 300), st.integers(1, 50), st.integers(1, 10), st.integers(0, 1000))
def test_hash_virtual_is_a_sum_of_hashed_variables(num_weights, size, num_hashes, seed):
    pool = pools.HashPool(size=size, num_hashes=num_hashes, seed=seed, num_weights=num_weights)
    params = _random_params(pool, seed)
    index = np.arange(num_weights, dtype=np.uint32)
    expected = np.zeros(num_weights)
    for hash_seed in pools.hash_seeds(seed, num_hashes):
        picks = pools.hash_indices(index, hash_seed, size)
        assert picks.min() >= 0 and picks.max() < size
        expected += params["pool"][picks]
    np.testing.assert_allclose(pool.virtual(params, jnp.float32), expected, rtol=1e-5, atol=1e-4)


def test_hash_functions_differ_and_spread():
    index = np.arange(100_000, dtype=np.uint32)
    seeds = pools.hash_seeds(0, 3)
    picks = [pools.hash_indices(index, s, 1000) for s in seeds]
    assert len(set(seeds)) == 3
    assert np.mean(picks[0] == picks[1]) < 0.01  # independent-looking hashes
    counts = np.bincount(picks[0], minlength=1000)
    assert counts.min() > 50 and counts.max() < 160  # about 100 each


@pytest.mark.parametrize("combine", ["sum", "prod"])
def test_meta_pool_combines_elementwise(combine):
    pool = pools.make_pool("meta", 5000, 2000.0,
                           _options(pool="meta", meta_pools=("product", "kronecker"),
                                    meta_combine=combine))
    params = _random_params(pool, 3)
    parts = [p.virtual(params[str(i)], jnp.float32)[:pool.virtual_size]
             for i, p in enumerate(pool.pools)]
    expected = parts[0] + parts[1] if combine == "sum" else parts[0] * parts[1]
    np.testing.assert_allclose(pool.virtual(params, jnp.float32), expected, rtol=1e-6)
    assert pool.num_variables == sum(p.num_variables for p in pool.pools) >= 2000


@pytest.mark.parametrize("kind,extra", [("product", {}), ("kronecker", {}),
                                        ("hash", {"num_hashes": 2}), ("hash", {"num_hashes": 10}),
                                        ("meta", {"meta_combine": "sum"}),
                                        ("meta", {"meta_combine": "prod"})])
@pytest.mark.parametrize("bounded", [False, True])
def test_init_gives_unit_std_virtual_weights(kind, extra, bounded):
    num_weights = 300_000
    pool = pools.make_pool(kind, num_weights, 0.1 * num_weights,
                           _options(pool=kind, **extra))
    virtual = np.asarray(pool.virtual(pool.init(jax.random.key(1), 1.0, bounded), jnp.float32))
    virtual = virtual[:num_weights]
    assert abs(virtual.std() - 1.0) < 0.05, virtual.std()
    assert abs(virtual.mean()) < 0.05


def test_product_init_entries_have_std_m_to_minus_quarter():
    pool = pools.ProductPool(side=2000, rank=64)
    params = pool.init(jax.random.key(0), 1.0, bounded=False)
    assert abs(float(params["a"].std()) - 64**-0.25) < 0.01
    bounded = pool.init(jax.random.key(0), 1.0, bounded=True)
    assert float(jnp.abs(bounded["a"]).max()) <= math.sqrt(3) * 64**-0.25 + 1e-6


@pytest.mark.parametrize("kind", ["product", "kronecker", "hash", "meta"])
def test_gradients_reach_every_pool_variable(kind):
    pool = pools.make_pool(kind, 2000, 600.0, _options(pool=kind))
    params = pool.init(jax.random.key(0), 1.0, False)
    weights = jax.random.normal(jax.random.key(1), (pool.virtual_size,))
    grads = jax.grad(lambda p: jnp.sum(pool.virtual(p, jnp.float32) * weights))(params)
    for leaf in jax.tree.leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).max()) > 0
