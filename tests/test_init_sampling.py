"""What a linen model's own init reveals: creation order, normalization layers, init stats."""

import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import smh_jax
from smh_jax.core import tree_paths
from smh_jax.errors import UserError
from smh_jax.linen import init_sampling

ORIGINAL_PARAM, ORIGINAL_VARIABLE = nn.Module.param, nn.Module.variable


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(64, (3, 3), kernel_init=nn.initializers.he_normal(), name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, name="my_bn")(x)  # any name
        w = self.variable("params", "extra", lambda: jnp.ones((64,)))  # not via self.param
        x = nn.LayerNorm(name="ln")(x * w.value)
        return nn.Dense(128, kernel_init=nn.initializers.uniform(0.5), name="head")(
            x.mean((1, 2)))


def _record(model, x):
    def init(rng):
        with init_sampling.recording() as recording:
            params = model.init(rng, x)["params"]
        return params, recording

    params, recording = None, None

    def traced(rng):  # traced, as under jit
        nonlocal params, recording
        params, recording = init(rng)
        return params

    jax.eval_shape(traced, jax.random.key(0))
    return params, recording


def test_recording_sees_params_and_variables_in_creation_order_and_norms_by_type():
    params, recording = _record(Net(), jnp.zeros((2, 8, 8, 3)))
    created = list(recording.first())
    assert set(created) == {p for p, _ in tree_paths.ordered_items(params)}
    assert created[:2] == [("conv", "kernel"), ("conv", "bias")]
    assert ("extra",) in created and recording.first()[("extra",)].kind == "variable"
    assert created[-2:] == [("head", "kernel"), ("head", "bias")]
    assert recording.normalization == {"my_bn", "ln"}
    assert nn.Module.param is ORIGINAL_PARAM and nn.Module.variable is ORIGINAL_VARIABLE


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(12):  # Dense_0 ... Dense_11: sorted keys put Dense_10 before Dense_2
            x = nn.Dense(2)(x)
        return x


class Cell(nn.Module):
    @nn.compact
    def __call__(self, carry, _):
        return nn.Dense(3, name="cell_dense")(carry), None


class Lifted(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.remat(Block)(name="remat_block")(x)
        x = nn.jit(Block)(name="jit_block")(x)
        x = nn.Dense(3, name="mid")(x)
        x, _ = nn.scan(Cell, variable_axes={"params": 0}, split_rngs={"params": True},
                       length=4)(name="stacked")(x, None)
        return nn.Dense(2, name="head")(x)


def test_lifted_transforms_tile_in_creation_order():
    layout = smh_jax.compress(Lifted(), fraction=0.5).init(
        jax.random.key(0), jnp.ones((1, 3)))["params"]["smh"].layout
    block = [f"Dense_{i}/{name}" for i in range(12) for name in ("kernel", "bias")]
    assert [t.path for t in layout.hashed] == (
        [f"remat_block/{p}" for p in block] + [f"jit_block/{p}" for p in block]
        + ["mid/kernel", "mid/bias", "stacked/cell_dense/kernel", "stacked/cell_dense/bias",
           "head/kernel", "head/bias"])
    jitted = jax.jit(smh_jax.compress(Lifted(), fraction=0.5).init)(
        jax.random.key(0), jnp.ones((1, 3)))["params"]["smh"].layout
    assert jitted == layout


def test_other_threads_initialize_unrecorded():
    other_params = []

    def other_thread():
        other_params.append(Net().init(jax.random.key(1), jnp.zeros((1, 4, 4, 3))))

    with init_sampling.recording() as recording:
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert other_params and recording.records == []


def test_patch_is_undone_when_init_fails():
    class Broken(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.param("w", nn.initializers.zeros, (3,))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with init_sampling.recording():
            Broken().init(jax.random.key(0), jnp.ones(2))
    assert nn.Module.param is ORIGINAL_PARAM and nn.Module.variable is ORIGINAL_VARIABLE


class VariableParam(nn.Module):
    """A parameter created with self.variable('params', ...), drawing its own rng."""

    @nn.compact
    def __call__(self, x):
        w = self.variable("params", "w", lambda: 3.0 * jax.random.normal(
            self.make_rng("params"), (x.shape[-1], 64)))
        return nn.Dense(4, name="d")(x @ w.value)


def test_variable_params_get_the_same_layout_eagerly_and_under_jit():
    compressed = smh_jax.compress(VariableParam(), fraction=0.5)
    x = jnp.ones((2, 64))
    eager = compressed.init(jax.random.key(0), x)["params"]["smh"].layout
    jitted = jax.jit(compressed.init)(jax.random.key(0), x)["params"]["smh"].layout
    assert eager == jitted
    assert eager.hashed[0].path == "w" and eager.hashed[0].init_std == pytest.approx(3.0, rel=0.05)


class DataDependentInit(nn.Module):
    """An initializer whose scale comes from the data: std 4 for these inputs."""

    @nn.compact
    def __call__(self, x):
        scale = 1.0 + jnp.mean(jnp.abs(x))
        w = self.param("w", lambda k, s: scale * jax.random.normal(k, s), (x.shape[-1], 64))
        return x @ w


def test_data_dependent_inits_are_exact_eagerly_and_a_clear_error_under_jit():
    compressed = smh_jax.compress(DataDependentInit(), fraction=0.5)
    x = 3.0 * jnp.ones((2, 64))
    eager = compressed.init(jax.random.key(0), x)["params"]["smh"].layout
    assert eager.hashed[0].init_std == pytest.approx(4.0, rel=0.03)
    with pytest.raises(UserError, match="initializer of 'w' depends on traced values"):
        jax.jit(compressed.init)(jax.random.key(0), x)
