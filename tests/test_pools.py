"""Pools: sizing, exact formulas for arbitrary variable values, init statistics, gradients."""

import math
import subprocess
import sys
import re
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smh_jax.core import pools
from smh_jax.core.options import SMHOptions, exact_decimal
from smh_jax.errors import UserError


def _options(**kw):
    return SMHOptions(fraction=0.5, **kw)


@given(st.integers(2, 10**7), st.floats(1e-4, 1.0))
def test_product_pool_is_the_smallest_that_reaches_the_target(num_weights, fraction):
    side = math.isqrt(num_weights - 1) + 1
    target = fraction * num_weights
    if target < 2 * side:
        # One rank (2n variables) is more than N itself for N <= 5 or so: no fraction fits.
        expected = ("smallest allowed fraction is" if 2 * side <= num_weights
                    else "no fraction in")
        with pytest.raises(UserError, match=expected):
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


@settings(max_examples=10)  # each new shape compiles
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


@given(st.sampled_from([1, 2, 300]), st.sampled_from([1, 3, 50]), st.integers(1, 10),
       st.integers(0, 1000))
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
    grads = jax.jit(jax.grad(lambda p: jnp.sum(pool.virtual(p, jnp.float32) * weights)))(params)
    for leaf in jax.tree.leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).max()) > 0


# ----------------------------------------------------------------------------- sizing


@given(st.integers(1, 10**7), st.floats(1e-6, 1.0), st.integers(1, 12))
def test_hash_pool_has_exactly_the_target_size(num_weights, fraction, num_hashes):
    target = fraction * num_weights
    options = _options(pool="hash", num_hashes=num_hashes)
    if target < num_hashes:
        with pytest.raises(UserError, match="one variable per hash"):
            pools.make_pool("hash", num_weights, target, options)
        return
    pool = pools.make_pool("hash", num_weights, target, options)
    assert pool.num_variables == pool.size == math.ceil(target)
    assert pool.virtual_size == num_weights and pool.num_hashes == num_hashes


@given(st.integers(16, 10**7), st.floats(1e-3, 1.0),
       st.sampled_from([("product", "kronecker"), ("product", "hash"),
                        ("kronecker", "hash", "product")]))
def test_meta_pool_splits_the_target_equally(num_weights, fraction, subs):
    target = fraction * num_weights
    options = _options(pool="meta", meta_pools=subs, num_hashes=2)
    minimum, _ = pools.smallest_pool("meta", num_weights, options)
    units = [pools.smallest_pool(k, num_weights, options)[0] for k in subs]
    assert minimum == len(subs) * max(units)
    if target < minimum:
        with pytest.raises(UserError, match="smallest meta pool"):
            pools.make_pool("meta", num_weights, target, options)
        return
    pool = pools.make_pool("meta", num_weights, target, options)
    share = target / len(subs)
    assert [p.kind for p in pool.pools] == list(subs)
    for sub in pool.pools:  # each sub-pool is the one its kind would get for the share
        assert sub == pools.make_pool(sub.kind, num_weights, share, options)
    assert pool.num_variables == sum(p.num_variables for p in pool.pools) >= target
    assert pool.virtual_size == min(p.virtual_size for p in pool.pools) >= num_weights


@pytest.mark.parametrize("num_weights,side", [(1, 1), (16, 2), (17, 3), (81, 3), (82, 4),
                                              (10**8, 100), (10**8 + 1, 101)])
def test_kronecker_side_is_the_exact_fourth_root_ceiling(num_weights, side):
    assert pools.kronecker_side(num_weights) == side


@pytest.mark.parametrize("kind,extra", [("product", {}), ("product", {"side": 50}),
                                        ("kronecker", {}), ("hash", {"num_hashes": 10}),
                                        ("meta", {"meta_pools": ("product", "kronecker")}),
                                        ("meta", {"meta_pools": ("hash", "product"),
                                                  "num_hashes": 3})])
def test_every_pool_names_its_smallest_fraction(kind, extra):
    """Below one unit of the pool: an error naming the smallest fraction; at it: a pool."""
    num_weights = 10_000
    options = _options(pool=kind, **extra)
    minimum, _ = pools.smallest_pool(kind, num_weights, options)
    with pytest.raises(UserError) as e:
        pools.make_pool(kind, num_weights, minimum - 0.5, options)
    message = str(e.value)
    assert f"smallest {kind} pool, {minimum} variables" in message
    named = float(re.search(r"smallest allowed fraction is ([0-9.e-]+)", message).group(1))
    assert minimum / num_weights <= named <= minimum / num_weights * 1.001  # rounded up
    pools.make_pool(kind, num_weights, named * num_weights, options)  # the named one builds
    pool = pools.make_pool(kind, num_weights, float(minimum), options)
    assert pool.num_variables == minimum if kind != "meta" else pool.num_variables >= minimum


def test_minimum_units_of_each_pool():
    options = _options(num_hashes=7, meta_pools=("product", "kronecker"))
    # N = 10,000: n = 100 (M = 1: 200), s = 10 (one replica: 2 * 100), K = 7.
    assert pools.smallest_pool("product", 10_000, options)[0] == 200
    assert pools.smallest_pool("product", 10_000, options.replace(side=30))[0] == 60
    assert pools.smallest_pool("kronecker", 10_000, options)[0] == 200
    assert pools.smallest_pool("hash", 10_000, options)[0] == 7
    assert pools.smallest_pool("meta", 10_000, options)[0] == 400
    with pytest.raises(UserError, match="'bloom' is not one of"):
        pools.smallest_pool("bloom", 10_000, options)


# ----------------------------------------------------------------------------- formulas


@settings(max_examples=10)
@given(st.integers(0, 2**31), st.sampled_from(["sum", "prod"]))
def test_meta_pool_with_a_hash_sub_pool(seed, combine):
    pool = pools.make_pool("meta", 900, 300.0, _options(
        pool="meta", meta_pools=("hash", "product", "kronecker"), meta_combine=combine,
        num_hashes=2, hash_seed=seed % 100))
    params = _random_params(pool, seed)
    hashed, product, kron = pool.pools
    index = np.arange(900, dtype=np.uint32)
    h = sum(params["0"]["pool"][pools.hash_indices(index, s, hashed.size)].astype(np.float64)
            for s in pools.hash_seeds(hashed.seed, 2))
    p = (np.float64(params["1"]["a"]) @ params["1"]["b"]).reshape(-1)[:900]
    k = sum(np.kron(np.float64(params["2"]["left"][i]), params["2"]["right"][i])
            for i in range(kron.replicas)).reshape(-1)[:900]
    expected = h + p + k if combine == "sum" else h * p * k
    np.testing.assert_allclose(pool.virtual(params, jnp.float32), expected, rtol=1e-4, atol=1e-3)


def test_hash_seeds_and_indices_are_deterministic_numpy_and_jax_alike():
    index = np.arange(5000, dtype=np.uint32)
    assert pools.hash_seeds(3, 4) == pools.hash_seeds(3, 4) != pools.hash_seeds(4, 4)
    for seed in pools.hash_seeds(3, 4):
        np.testing.assert_array_equal(pools.hash_indices(index, seed, 997),
                                      np.asarray(pools.hash_indices(jnp.asarray(index), seed,
                                                                    997)))


@pytest.mark.parametrize("kind,extra", [("product", {}), ("kronecker", {}),
                                        ("hash", {"num_hashes": 3}), ("meta", {})])
def test_virtual_in_bfloat16(kind, extra):
    dtype = "bfloat16"
    pool = pools.make_pool(kind, 3000, 900.0, _options(pool=kind, **extra))
    params = pool.init(jax.random.key(0), 1.0, False)
    low = pool.virtual(params, jnp.dtype(dtype))
    assert low.dtype == jnp.dtype(dtype) and low.shape == (pool.virtual_size,)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    np.testing.assert_allclose(np.float32(low), pool.virtual(params, jnp.float32),
                               rtol=0.05, atol=0.05)


# ----------------------------------------------------------------------------- gradients


def _vjp(pool, params, cotangent):
    return jax.vjp(lambda p: pool.virtual(p, jnp.float32), params)[1](cotangent)[0]


@settings(max_examples=10)
@given(st.integers(1, 30), st.integers(1, 5), st.integers(0, 2**31))
def test_product_gradient_is_the_two_transposed_products(side, rank, seed):
    pool = pools.ProductPool(side=side, rank=rank)
    params = _random_params(pool, seed)
    g = np.random.default_rng(seed + 1).normal(size=(side, side)).astype(np.float32)
    grads = _vjp(pool, params, jnp.asarray(g.reshape(-1)))
    np.testing.assert_allclose(grads["a"], g @ np.float64(params["b"]).T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads["b"], np.float64(params["a"]).T @ g, rtol=1e-4, atol=1e-4)


@settings(max_examples=10)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**31))
def test_kronecker_gradient(side, replicas, seed):
    """d/dL_i[a, c] = sum_bd G[a, b, c, d] R_i[b, d]; d/dR_i[b, d] = sum_ac G[...] L_i[a, c]."""
    pool = pools.KroneckerPool(side=side, replicas=replicas)
    params = _random_params(pool, seed)
    g = np.random.default_rng(seed + 1).normal(size=(side,) * 4)  # (a, b, c, d) row-major
    grads = _vjp(pool, params, jnp.asarray(g.reshape(-1), jnp.float32))
    left, right = np.float64(params["left"]), np.float64(params["right"])
    np.testing.assert_allclose(grads["left"], np.einsum("abcd,ibd->iac", g, right),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads["right"], np.einsum("abcd,iac->ibd", g, left),
                               rtol=1e-4, atol=1e-4)


@settings(max_examples=10)  # few shapes (each new one compiles), any values and seeds
@given(st.sampled_from([1, 37, 400]), st.sampled_from([1, 7, 40]), st.sampled_from([1, 2, 10]),
       st.integers(0, 1000))
def test_hash_gradient_sums_the_weights_each_variable_feeds(num_weights, size, num_hashes, seed):
    """d/dpool[j] = sum of G[i] over every (weight i, hash k) with h_k(i) = j (collisions add)."""
    pool = pools.HashPool(size=size, num_hashes=num_hashes, seed=seed, num_weights=num_weights)
    params = _random_params(pool, seed)
    g = np.random.default_rng(seed).normal(size=num_weights)
    grads = _vjp(pool, params, jnp.asarray(g, jnp.float32))
    expected = np.zeros(size)
    index = np.arange(num_weights, dtype=np.uint32)
    for hash_seed in pools.hash_seeds(seed, num_hashes):
        np.add.at(expected, pools.hash_indices(index, hash_seed, size), g)
    np.testing.assert_allclose(grads["pool"], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("combine", ["sum", "prod"])
def test_meta_gradient_is_the_chain_rule_through_the_combination(combine):
    pool = pools.make_pool("meta", 2000, 800.0, _options(
        pool="meta", meta_pools=("product", "hash"), meta_combine=combine))
    params = _random_params(pool, 5)
    length = pool.virtual_size
    g = jnp.asarray(np.random.default_rng(0).normal(size=length), jnp.float32)
    grads = _vjp(pool, params, g)
    parts = [p.virtual(params[str(i)], jnp.float32)[:length] for i, p in enumerate(pool.pools)]
    for i, sub in enumerate(pool.pools):
        # sum: each sub-pool sees G; prod: G times the other factor.
        upstream = g if combine == "sum" else g * parts[1 - i]
        padded = jnp.zeros(sub.virtual_size).at[:length].set(upstream)
        expected = jax.vjp(lambda p, s=sub: s.virtual(p, jnp.float32), params[str(i)])[1](
            padded)[0]
        for got, want in zip(jax.tree.leaves(grads[str(i)]), jax.tree.leaves(expected),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**9), st.integers(1, 10**9))
def test_smallest_fraction_is_rounded_up_so_it_is_itself_allowed(a, b):
    minimum, num_weights = min(a, b), max(a, b)
    named = pools.smallest_fraction(minimum, num_weights)
    printed = pools.format_exact(named)
    # The printed figure, given back as a fraction, reaches the minimum exactly.
    assert exact_decimal(SMHOptions(fraction=float(printed)).fraction) * num_weights >= minimum
    assert named <= 1
    assert named <= Fraction(minimum, num_weights) * Fraction(1001, 1000)  # 4 digits
    assert len(printed.replace(".", "").lstrip("0")) <= 4  # significant digits


def test_a_pool_larger_than_the_hashed_weights_says_no_fraction_reaches_it():
    options = _options(side=100)  # one rank is 2 x 100 variables for 50 weights
    with pytest.raises(UserError, match=r"smallest product pool, 200 variables .*no fraction "
                                        r"in \(0, 1\] reaches it: the 50 hashed weights"):
        pools.make_pool("product", 50, 50.0, options)


@settings(max_examples=300, deadline=None)
@given(st.integers(4, 10**7), st.integers(1, 10**4), st.sampled_from([2, 3, 4]))
def test_pool_sizes_are_exact_for_decimal_fractions(num_weights, thousandths, digits):
    """fraction x N in exact decimal: 0.56 x 625 is 350, never 350.00000000000006."""
    fraction = round(thousandths / 10**4, digits) or 10**-digits
    target = Fraction(repr(fraction)) * num_weights
    options = SMHOptions(fraction=fraction)
    side = pools.product_side(num_weights, options)
    if target >= 2 * side:
        product = pools.make_pool("product", num_weights, exact_decimal(fraction) * num_weights,
                                  options)
        assert product.rank == math.ceil(target / (2 * side))
        assert 2 * side * (product.rank - 1) < target <= 2 * side * product.rank
    hashed = pools.make_pool("hash", num_weights, exact_decimal(fraction) * num_weights,
                             options) if target >= 1 else None
    if hashed is not None:
        assert hashed.size == math.ceil(target)


def test_a_float_fraction_does_not_gain_a_pool_unit_from_round_off():
    options = SMHOptions(fraction=0.56)
    assert 0.56 * 625 > 350  # the binary float overshoots...
    pool = pools.make_pool("product", 625, exact_decimal(options.fraction) * 625, options)
    assert (pool.side, pool.rank) == (25, 7)  # ...the exact decimal does not: 350 = 2 x 25 x 7


# ----------------------------------------------------------------------------- hashnet


def _hashnet_layout(fraction=0.125):
    rng = np.random.default_rng(0)
    params = {"fc1": {"kernel": rng.uniform(-0.05, 0.05, (40, 30)).astype(np.float32),
                      "bias": rng.uniform(-0.05, 0.05, 30).astype(np.float32)},
              "fc2": {"kernel": rng.uniform(-0.2, 0.2, (30, 10)).astype(np.float32),
                      "bias": np.zeros(10, np.float32)}}
    from smh_jax.core.layout import build_layout
    return build_layout(params, SMHOptions(fraction=fraction, pool="hashnet"))


def test_hashnet_hashes_each_layer_into_its_own_buckets_at_one_factor():
    layout = _hashnet_layout(0.125)
    pool = layout.pool
    assert [(w, b) for w, b, _ in pool.groups] == [(1230, 154), (310, 39)]  # ceil(w / 8)
    assert pool.num_variables == 193 and pool.virtual_size == layout.num_hashed == 1540
    assert layout.modifiers == ()  # the buckets hold weights in their layer's units
    params = pool.init(jax.random.key(0), 1.0, layout.bounded_init)
    virtual = np.asarray(pool.virtual(params, jnp.float32))
    buckets = np.asarray(params["buckets"])
    for group, (weights, count, std) in enumerate(pool.groups):
        index, sign = (np.asarray(a) for a in pool.indices_and_signs(group))
        offset = sum(b for _, b, _ in pool.groups[:group])
        assert offset <= index.min() and index.max() < offset + count  # its own buckets
        assert len(np.unique(index)) == count  # every bucket used
        assert set(np.unique(sign)) == {-1, 1}
        assert abs(sign.mean()) < 4 / np.sqrt(weights)  # balanced: within 4 sd of 0
        start = sum(w for w, _, _ in pool.groups[:group])
        np.testing.assert_array_equal(virtual[start:start + weights], sign * buckets[index])
        assert abs(buckets[offset:offset + count].std() / std - 1) < 0.2  # the layer's scale


def test_sign_hash_is_balanced():
    signs = pools.sign_hash(np.arange(1_000_000, dtype=np.uint32), 12345).astype(np.float64)
    assert abs(signs.mean()) < 0.004  # 4 standard deviations of a fair coin's mean
    assert abs(np.mean(signs[1:] * signs[:-1])) < 0.004  # neighbours independent


def test_hashnet_hashes_are_the_same_in_another_process_and_in_numpy():
    layout = _hashnet_layout()
    index, sign = layout.pool.indices_and_signs(0)
    code = ("import jax, numpy as np; from smh_jax.core import pools; "
            "p = pools.LayerHashPool(groups=((1230, 154, 0.03), (310, 39, 0.1)), seed=0); "
            "i, s = p.indices_and_signs(0); print(np.asarray(i).tobytes().hex()[:64], "
            "np.asarray(s).tobytes().hex()[:64])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split()
    assert other == [np.asarray(index).tobytes().hex()[:64], np.asarray(sign).tobytes().hex()[:64]]
    index_seed, sign_seed = layout.pool.seeds(0)
    local = np.arange(1230, dtype=np.uint32)
    np.testing.assert_array_equal(pools.hash_indices(local, index_seed, 154), index)
    np.testing.assert_array_equal(pools.sign_hash(local, sign_seed), sign)


def test_hashnet_gradient_reaches_each_bucket_with_its_weights_signs():
    layout = _hashnet_layout()
    pool = layout.pool
    params = pool.init(jax.random.key(0), 1.0, False)
    g = jax.random.normal(jax.random.key(1), (pool.virtual_size,))
    grads = _vjp(pool, params, g)["buckets"]
    index = np.concatenate([np.asarray(pool.indices_and_signs(i)[0]) for i in range(2)])
    sign = np.concatenate([np.asarray(pool.indices_and_signs(i)[1]) for i in range(2)])
    expected = np.zeros(pool.num_variables)
    np.add.at(expected, index, sign * np.asarray(g))
    np.testing.assert_allclose(grads, expected, rtol=1e-5, atol=1e-5)
