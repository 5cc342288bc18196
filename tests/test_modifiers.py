"""Per-slice modifiers: each one's formula, initial value, gradient and errors, in any order."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smh_jax.core import modifiers, tree_paths
from smh_jax.core.layout import build_layout
from smh_jax.core.materialize import materialize, virtual_weights
from smh_jax.core.options import MODIFIERS, SMHOptions
from smh_jax.core.params import init_params
from smh_jax.errors import UserError


def _dense():
    rng = np.random.default_rng(0)
    return {
        "conv": {"kernel": rng.normal(0, 0.3, (3, 3, 2, 5)).astype(np.float32)},
        "head": {"kernel": rng.uniform(-0.2, 0.2, (5, 7)).astype(np.float32),
                 "bias": np.zeros(7, np.float32)},
        "temperature": np.float32(1.5) + np.zeros((), np.float32),  # a 0-d parameter
    }


# fan_out as Flax's variance_scaling counts it: receptive field x output units.
FAN_OUT = {"conv/kernel": 3 * 3 * 5, "head/kernel": 7, "head/bias": 7, "temperature": 1}


def _setup(modifier_names, seed=0, **kw):
    options = SMHOptions(fraction=1.0, modifiers=tuple(modifier_names), **kw)
    layout = build_layout(_dense(), options)
    params = init_params(jax.random.key(0), layout, _dense())
    rng = np.random.default_rng(seed)
    # Arbitrary values for every variable (not the init's): the formulas hold for any.
    params = params.replace(
        pool={k: jnp.asarray(rng.uniform(-2, 2, v.shape), jnp.float32)
              for k, v in params.pool.items()},
        modifiers={k: jnp.asarray(rng.uniform(-3, 3, v.shape), jnp.float32)
                   for k, v in params.modifiers.items()})
    return layout, params


def _unit_slices(params):
    virtual = np.float64(virtual_weights(params, jnp.float32))
    return {t.path: virtual[t.offset:t.offset + t.size].reshape(t.shape)
            for t in params.layout.hashed}


def _get(tree, path):
    return np.asarray(tree_paths.get(tree, tuple(path.split("/"))))


def _expected(params, names):
    """Each modifier's definition applied in order to the tensor's unit-std slice."""
    layout = params.layout
    out = {}
    for i, (path, u) in enumerate(_unit_slices(params).items()):
        t = layout.hashed[i]
        c = math.sqrt(t.size) if layout.scale_parameterization == "norm" else 1.0
        w = u
        for name in names:
            if name == "scale":
                w = w * (float(params.modifiers["scale"][i]) / c if layout.learn_scale
                         else modifiers.frozen_scale(t, layout))
            elif name == "fan_out_scale":
                w = w * math.sqrt(layout.fan_out_gain / FAN_OUT[path])
            elif name in ("learned_fan_out_scale", "learned_scalar"):
                w = w * float(params.modifiers[name][i]) / c
            elif name == "relu":
                w = np.maximum(w, 0.0)
            elif name == "sign":
                w = np.sign(w)
        out[path] = w + t.init_mean  # the static offset: 1.5 for 'temperature', else 0
    return out


@pytest.mark.parametrize("names", [
    ("scale",), ("fan_out_scale",), ("learned_fan_out_scale",), ("learned_scalar",), ("relu",),
    ("sign",), ("learned_scalar", "relu", "fan_out_scale"), ("relu", "learned_scalar"),
    ("scale", "learned_fan_out_scale", "learned_scalar", "sign"),
])
@pytest.mark.parametrize("parameterization", ["norm", "direct"])
def test_each_modifier_is_its_definition_in_the_order_given(names, parameterization):
    layout, params = _setup(names, scale_parameterization=parameterization, fan_out_gain=3.0)
    assert [t.fan_out for t in layout.hashed] == list(FAN_OUT.values())
    dense = materialize(params)
    for path, want in _expected(params, names).items():
        np.testing.assert_allclose(_get(dense, path), want, rtol=2e-5, atol=2e-5)


def test_order_matters():
    """relu then a negative scalar gives non-positive weights; the other order the reverse."""
    for names in (("relu", "learned_scalar"), ("learned_scalar", "relu")):
        _, params = _setup(names, scale_parameterization="direct")
        params = params.replace(modifiers={"learned_scalar": -jnp.ones(4)})
        kernel = np.asarray(materialize(params)["conv"]["kernel"])
        assert (kernel <= 0).all() if names[0] == "relu" else (kernel >= 0).all()
        assert np.abs(kernel).max() > 0


def test_fixed_scale_owns_no_variable():
    layout, params = _setup(("scale",), learn_scale=False)
    assert params.modifiers == {} and modifiers.learnable(layout) == ()
    for path, want in _expected(params, ("scale",)).items():
        np.testing.assert_allclose(_get(materialize(params), path), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("parameterization", ["norm", "direct"])
def test_initial_values_of_the_learnable_modifiers(parameterization):
    names = ("scale", "learned_fan_out_scale", "learned_scalar")
    layout = build_layout(_dense(), SMHOptions(fraction=1.0, modifiers=names, fan_out_gain=2.0,
                                               scale_parameterization=parameterization))
    params = init_params(jax.random.key(0), layout, _dense())
    assert list(params.modifiers) == list(names)
    s = modifiers.multipliers(layout, params.modifiers)
    np.testing.assert_allclose(s["scale"], [t.init_std for t in layout.hashed], rtol=1e-6)
    np.testing.assert_allclose(s["learned_fan_out_scale"],
                               [math.sqrt(2.0 / f) for f in FAN_OUT.values()], rtol=1e-6)
    np.testing.assert_allclose(s["learned_scalar"], np.ones(4), rtol=1e-6)
    # Stored: theta = s * sqrt(size) for 'norm', s itself for 'direct'.
    divisors = np.sqrt([t.size for t in layout.hashed]) if parameterization == "norm" else 1.0
    np.testing.assert_allclose(params.modifiers["learned_scalar"], divisors * np.ones(4),
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["scale", "learned_fan_out_scale", "learned_scalar"])
@pytest.mark.parametrize("parameterization", ["norm", "direct"])
def test_learnable_modifier_gradient(name, parameterization):
    """d/d theta_l of <G, W> = <G_l, u_l> x (other factors) / c_l."""
    layout, params = _setup((name, "fan_out_scale"), scale_parameterization=parameterization)
    rng = np.random.default_rng(3)
    cotangent = {t.path: rng.normal(size=t.shape) for t in layout.hashed}

    def loss(p):
        dense = materialize(p)
        return sum(jnp.sum(_get_jnp(dense, path) * g) for path, g in cotangent.items())

    grads = jax.grad(loss)(params)
    units = _unit_slices(params)
    for i, t in enumerate(layout.hashed):
        c = math.sqrt(t.size) if parameterization == "norm" else 1.0
        want = np.sum(cotangent[t.path] * units[t.path]) * math.sqrt(2.0 / FAN_OUT[t.path]) / c
        np.testing.assert_allclose(grads.modifiers[name][i], want, rtol=1e-4, atol=1e-5)


def _get_jnp(tree, path):
    return tree_paths.get(tree, tuple(path.split("/")))


def test_relu_gradient_is_masked_and_sign_is_straight_through():
    for name in ("relu", "sign"):
        layout, params = _setup((name,))
        g = jnp.asarray(np.random.default_rng(0).normal(size=layout.num_hashed), jnp.float32)

        def loss(p, g=g, layout=layout):
            dense = materialize(p)
            flat = jnp.concatenate([_get_jnp(dense, t.path).reshape(-1) for t in layout.hashed])
            return jnp.sum(flat * g)

        grads = jax.grad(loss)(params)
        u = np.float64(virtual_weights(params, jnp.float32))[:layout.num_hashed]
        upstream = np.zeros(layout.pool.virtual_size)
        upstream[:layout.num_hashed] = np.asarray(g) * ((u > 0) if name == "relu" else 1.0)
        b = np.float64(params.pool["b"])
        expected_a = upstream.reshape(layout.pool.side, -1) @ b.T
        np.testing.assert_allclose(grads.pool["a"], expected_a, rtol=1e-4, atol=1e-4)


def test_per_tensor_scalars_and_vectors_give_the_same_weights():
    """`apply` takes the multipliers as one vector or as a sequence of per-tensor scalars."""
    layout, params = _setup(("scale", "learned_scalar"))
    vectors = modifiers.multipliers(layout, params.modifiers)
    scalars = {k: [v[i] for i in range(len(layout.hashed))] for k, v in vectors.items()}
    values = jnp.linspace(-1.0, 1.0, 90).reshape(3, 3, 2, 5)
    np.testing.assert_array_equal(modifiers.apply(layout, 0, values, vectors),
                                  modifiers.apply(layout, 0, values, scalars))


def test_modifier_errors():
    with pytest.raises(UserError, match="smh.modifiers: 'tanh' is not one of " + ", ".join(
            MODIFIERS)):
        SMHOptions(fraction=0.5, modifiers=("scale", "tanh"))
    with pytest.raises(UserError, match="lists a modifier twice"):
        SMHOptions(fraction=0.5, modifiers=("relu", "relu"))
    with pytest.raises(UserError, match="fan_out_gain: 0.0 is outside the allowed range"):
        SMHOptions(fraction=0.5, fan_out_gain=0)
    with pytest.raises(UserError, match="scale_parameterization: 'log' is not one of"):
        SMHOptions(fraction=0.5, scale_parameterization="log")


def test_backward_of_slices_and_scalars_is_one_concatenate_each():
    """The split into tensors and into per-tensor multipliers transposes to concatenates,
    not to one zero-padded copy of the whole vector per tensor (L passes over N values)."""
    layout, params = _setup(("scale", "learned_scalar"))
    grad = jax.grad(lambda p: sum(jnp.sum(x ** 2) for x in jax.tree.leaves(materialize(p))))
    text = str(jax.make_jaxpr(grad)(params))
    assert text.count("concatenate") == 3  # virtual weights, scale, learned_scalar
    assert " pad[" not in text and "dynamic_update_slice" not in text
