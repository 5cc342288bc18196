"""Materialization: every hashed tensor is its slice of the pool, times its modifiers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smh_jax.core import modifiers, tree_paths
from smh_jax.core.layout import build_layout
from smh_jax.core.materialize import materialize
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import init_params


def _dense(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv": {"kernel": rng.normal(0, 0.2, (3, 3, 2, 5)).astype(np.float32),
                 "bias": np.zeros(5, np.float32)},
        "bn": {"scale": np.ones(5, np.float32), "bias": np.zeros(5, np.float32)},
        "head": {"kernel": rng.uniform(-0.3, 0.3, (5, 7)).astype(np.float32),
                 "bias": np.zeros(7, np.float32)},
    }


def _arbitrary(params, seed):
    """Replaces every trainable value with arbitrary numbers (not the init's)."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [rng.uniform(-2, 2, np.shape(x)).astype(np.float32)
                                        for x in leaves])


@given(st.integers(0, 2**31), st.sampled_from(["norm", "direct"]), st.floats(0.2, 1.0))
def test_each_hashed_tensor_is_its_slice_of_a_times_b_times_its_scale(seed, param, fraction):
    layout = build_layout(_dense(), SMHOptions(fraction=fraction, scale_parameterization=param),
                          frozenset({"bn"}))
    params = _arbitrary(init_params(jax.random.key(0), layout, _dense()), seed)
    dense = materialize(params)
    virtual = (np.float64(params.pool["a"]) @ params.pool["b"]).reshape(-1)
    stored = np.float64(params.modifiers["scale"])
    for i, t in enumerate(layout.hashed):
        divisor = math.sqrt(t.size) if param == "norm" else 1.0
        expected = virtual[t.offset:t.offset + t.size].reshape(t.shape) * stored[i] / divisor
        got = tree_paths.get(dense, tuple(t.path.split("/")))
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(dense["bn"]["scale"], params.unhashed["bn"]["scale"])
    assert list(dense) == ["conv", "bn", "head"]  # creation order kept


def test_initial_scales_reproduce_each_layers_init_std():
    layout = build_layout(_dense(), SMHOptions(fraction=1.0), frozenset({"bn"}))
    params = init_params(jax.random.key(0), layout, _dense())
    scales = modifiers.multipliers(layout, params.modifiers)["scale"]
    np.testing.assert_allclose(scales, [t.init_std for t in layout.hashed], rtol=1e-6)


@pytest.mark.parametrize("store", ["cyclic", "padding"])
def test_index_stores_beyond_the_pool(store):
    dense = {"d": {"kernel": np.random.default_rng(0).normal(size=(10, 10)).astype(np.float32)}}
    layout = build_layout(dense, SMHOptions(fraction=1.0, side=6, index_store=store,
                                            pad_value=0.5, modifiers=()))
    params = _arbitrary(init_params(jax.random.key(0), layout, dense), 1)
    virtual = (params.pool["a"] @ params.pool["b"]).reshape(-1)  # 36 of the 100 weights
    got = np.asarray(materialize(params)["d"]["kernel"]).reshape(-1)
    np.testing.assert_allclose(got[:36], virtual, rtol=1e-5)
    if store == "cyclic":
        np.testing.assert_allclose(got[36:72], virtual, rtol=1e-5)
        np.testing.assert_allclose(got[72:], virtual[:28], rtol=1e-5)
    else:
        np.testing.assert_array_equal(got[36:], 0.5)


def test_modifier_formulas():
    dense = {"d": {"kernel": np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)}}
    options = SMHOptions(fraction=1.0, modifiers=("learned_scalar", "fan_out_scale", "relu"),
                         scale_parameterization="direct", fan_out_gain=3.0)
    layout = build_layout(dense, options)
    params = init_params(jax.random.key(0), layout, dense)
    params = params.replace(modifiers={"learned_scalar": jnp.array([-2.0])})
    virtual = np.asarray(params.pool["a"] @ params.pool["b"]).reshape(-1)[:24].reshape(4, 6)
    expected = np.maximum(virtual * -2.0 * math.sqrt(3.0 / 6), 0)
    np.testing.assert_allclose(materialize(params)["d"]["kernel"], expected, rtol=1e-5)


def test_sign_modifier_has_a_straight_through_gradient():
    dense = {"d": {"kernel": np.zeros((4, 6), np.float32)}}
    layout = build_layout(dense, SMHOptions(fraction=1.0, modifiers=("sign",)))
    params = init_params(jax.random.key(0), layout, dense)
    kernel = materialize(params)["d"]["kernel"]
    assert set(np.unique(np.asarray(kernel))) <= {-1.0, 1.0}
    target = jnp.arange(24.0).reshape(4, 6)
    grads = jax.grad(lambda p: jnp.sum(materialize(p)["d"]["kernel"] * target))(params)
    # Straight-through: the gradient w.r.t. A is target @ B^T, as if sign were identity.
    expected_a = np.zeros((params.layout.pool.side,) * 2)
    expected_a.reshape(-1)[:24] = np.arange(24.0)
    np.testing.assert_allclose(grads.pool["a"], expected_a @ np.asarray(params.pool["b"]).T,
                               rtol=1e-4, atol=1e-4)


def test_norm_parameterization_divides_the_scale_gradient_by_size():
    """norm: d loss / d theta = (d loss / d s) / sqrt(size); the SGD step on s shrinks by size."""
    grads = {}
    for param in ("norm", "direct"):
        layout = build_layout(_dense(), SMHOptions(fraction=1.0, scale_parameterization=param),
                              frozenset({"bn"}))
        params = init_params(jax.random.key(0), layout, _dense())
        grads[param] = jax.grad(
            lambda p: sum(jnp.sum(x ** 3) for x in jax.tree.leaves(materialize(p))))(params)
    sizes = np.array([t.size for t in layout.hashed])
    np.testing.assert_allclose(grads["norm"].modifiers["scale"] * np.sqrt(sizes),
                               grads["direct"].modifiers["scale"], rtol=1e-4, atol=1e-7)


def test_materialize_is_one_dot_and_no_gather():
    layout = build_layout(_dense(), SMHOptions(fraction=0.5), frozenset({"bn"}))
    params = init_params(jax.random.key(0), layout, _dense())
    for fn in (materialize, jax.grad(lambda p: sum(
            jnp.sum(x) for x in jax.tree.leaves(materialize(p))))):
        text = str(jax.make_jaxpr(fn)(params))
        # Forward: one A @ B. Backward adds exactly its two transposes (dA, dB).
        assert text.count("dot_general") == (1 if fn is materialize else 3)
        assert "gather" not in text and "scatter" not in text


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_product_runs_in_smh_dtype_and_tensors_keep_their_own_dtype(dtype):
    layout = build_layout(_dense(), SMHOptions(fraction=0.5, dtype=dtype), frozenset({"bn"}))
    params = init_params(jax.random.key(0), layout, _dense())
    dense = materialize(params)
    assert dense["conv"]["kernel"].dtype == jnp.float32  # the parameter's own dtype
    assert materialize(params, dtype)["conv"]["kernel"].dtype == jnp.dtype(dtype)
    assert dense["bn"]["scale"].dtype == jnp.float32  # unhashed stay as they are
    assert params.pool["a"].dtype == jnp.float32  # variables stay float32
    reference = materialize(params, jnp.float32)["conv"]["kernel"]
    np.testing.assert_allclose(np.float32(dense["conv"]["kernel"]), reference, rtol=0.02, atol=0.01)
