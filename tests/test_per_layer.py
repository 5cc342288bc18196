"""Per-layer materialization: the same model as full materialization, eager and under jit,
with less temporary memory in the compiled program."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smh_jax
from smh_jax.core import materialize, rows
from smh_jax.errors import UserError


class MLP(nn.Module):
    """Wide Dense layers (weights dominate memory at batch 1), BatchNorm, one built in setup."""

    width: int = 256
    depth: int = 4

    @nn.compact
    def __call__(self, x, head: bool = True, train: bool = False):
        for _ in range(self.depth):
            x = nn.relu(nn.Dense(self.width)(x))
        x = nn.BatchNorm(use_running_average=not train)(SetupDense(self.width)(x))
        return nn.Dense(10)(x) if head else x


class SetupDense(nn.Module):
    features: int

    def setup(self):
        self.kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.features,) * 2)

    def __call__(self, x):
        return x @ self.kernel


def _pair(model, x, init_kwargs=None, **options):
    full = smh_jax.compress(model, fraction=0.25, **options)
    variables = jax.jit(functools.partial(full.init, **(init_kwargs or {})))(
        jax.random.key(0), x)
    return full, full.clone(per_layer=True), variables


class ResidualCNN(nn.Module):
    """A conv stem, one residual block with BatchNorm, a Dense head (a ResNet in small)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train)
        x = nn.relu(norm()(nn.Conv(8, (3, 3), use_bias=False)(x)))
        y = nn.relu(norm()(nn.Conv(8, (3, 3), use_bias=False)(x)))
        y = norm()(nn.Conv(8, (3, 3), use_bias=False)(y))
        x = nn.relu(x + y)
        return nn.Dense(10)(x.mean(axis=(1, 2)))


def test_cnn_per_layer_equals_full_materialization_under_jit():
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    full, per_layer, variables = _pair(ResidualCNN(), x)
    expected = jax.jit(full.apply)(variables, x)
    # Rows of A times B round like the whole product up to XLA's blocking of the dot.
    np.testing.assert_allclose(jax.jit(per_layer.apply)(variables, x), expected, rtol=1e-5,
                               atol=1e-5)
    got, updates = jax.jit(functools.partial(per_layer.apply, train=True,
                                             mutable=["batch_stats"]))(variables, x)
    want, want_updates = full.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert jax.tree.structure(updates) == jax.tree.structure(want_updates)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(want_updates), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"side": 200, "index_store": "cyclic"},
                                     {"side": 200, "index_store": "padding", "pad_value": 0.1},
                                     {"modifiers": ("fan_out_scale", "learned_scalar")}])
def test_each_tensor_equals_its_full_materialization(options):
    x = jnp.ones((1, 256))
    _, _, variables = _pair(MLP(), x, **options)
    params = variables["params"]["smh"]
    full = jax.jit(materialize.hashed_tensors)(params)
    per_tensor = jax.jit(lambda p: [rows.hashed_tensor(p, i) for i in range(len(p.layout.hashed))]
                         )(params)
    for t, got in zip(params.layout.hashed, per_tensor, strict=True):
        np.testing.assert_allclose(got, full[t.key], rtol=1e-5, atol=1e-6)


def test_compiled_program_holds_less_memory():
    x = jnp.ones((1, 256))
    full, per_layer, variables = _pair(MLP(depth=8), x)
    stats = {name: jax.jit(module.apply).lower(variables, x).compile().memory_analysis()
             for name, module in (("full", full), ("per_layer", per_layer))}
    dense_bytes = 4 * full.accounting(variables["params"])["dense_params"]
    # Full materialization holds A @ B and the dense tree; per layer, about one layer's
    # rows and weights (each Dense kernel is 1/10 of the model).
    assert stats["full"].temp_size_in_bytes > dense_bytes
    assert stats["per_layer"].temp_size_in_bytes < dense_bytes / 2
    assert stats["per_layer"].temp_size_in_bytes < stats["full"].temp_size_in_bytes / 4
    np.testing.assert_allclose(jax.jit(per_layer.apply)(variables, x),
                               jax.jit(full.apply)(variables, x), rtol=1e-5, atol=1e-5)


def test_unreached_hashed_module_and_other_pools_are_errors():
    x = jnp.ones((1, 16))
    _, per_layer, variables = _pair(MLP(width=16, depth=1), x)
    with pytest.raises(ValueError, match="no method of module 'Dense_1'"):
        jax.jit(functools.partial(per_layer.apply, head=False))(variables, x)
    kron = smh_jax.compress(MLP(width=16, depth=1), fraction=0.5, pool="kronecker")
    variables = jax.jit(kron.init)(jax.random.key(0), x)
    with pytest.raises(UserError, match="'kronecker' cannot be materialized per layer"):
        jax.jit(kron.clone(per_layer=True).apply)(variables, x)
