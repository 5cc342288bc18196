"""Recording and replaying a model's own initializers (the source of SMH's init stats)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smh_jax
from smh_jax.linen import init_sampling
from smh_jax.core import tree_paths

ORIGINAL_PARAM = nn.Module.param


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(64, (3, 3), kernel_init=nn.initializers.he_normal(), name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, name="my_bn")(x)  # any name
        x = nn.LayerNorm(name="ln")(x)
        return nn.Dense(128, kernel_init=nn.initializers.uniform(0.5), name="head")(
            x.mean((1, 2)))


class DataDependentInit(nn.Module):
    """An initializer that closes over the (traced) input: cannot be replayed alone."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        scale = self.param("scale", lambda rng: jnp.full((x.shape[-1],), x.std() + 1.0))
        return nn.Dense(256, name="head")(x * scale)


def _record(model, x):
    records, normalization = [], set()

    def init(rng):
        with init_sampling.recording(records, normalization):
            return model.init(rng, x)["params"]

    params = jax.eval_shape(init, jax.random.key(0))  # traced, as under jit
    return params, records, normalization


def test_recording_sees_every_param_and_normalization_by_type():
    params, records, normalization = _record(Net(), jnp.zeros((2, 8, 8, 3)))
    created = [r[0] for r in records]
    assert set(created) == {p for p, _ in tree_paths.ordered_items(params)}
    assert created[:2] == [("conv", "kernel"), ("conv", "bias")]  # creation order
    assert created[-2:] == [("head", "kernel"), ("head", "bias")]
    assert normalization == {"my_bn", "ln"}
    assert nn.Module.param is ORIGINAL_PARAM  # the patch is undone


def test_replay_draws_the_initializers_own_distribution():
    params, records, _ = _record(Net(), jnp.zeros((2, 8, 8, 3)))
    sample = init_sampling.replay(records, {("conv", "kernel"), ("head", "kernel")})
    assert set(sample) == {"conv", "head"}
    conv, head = sample["conv"]["kernel"], sample["head"]["kernel"]
    assert conv.shape == (3, 3, 3, 64) and head.shape == (64, 128)
    assert abs(conv.std() / np.sqrt(2 / 27) - 1) < 0.1  # he_normal: fan_in 3*3*3
    # flax uniform(s) is U[0, s): std s / sqrt(12).
    assert 0 <= head.min() and head.max() <= 0.5 and abs(head.std() / (0.5 / np.sqrt(12)) - 1) < 0.1


def test_traced_initializers_fall_back_to_the_eager_sample():
    x = jnp.ones((4, 16))
    replayed = []

    def init(rng, x):  # replay inside the trace, as compress does
        records = []
        with init_sampling.recording(records, set()):
            variables = DataDependentInit().init(rng, x)
        replayed.append(init_sampling.replay(records, {("scale",), ("head", "kernel")}))
        return variables["params"]

    params = jax.eval_shape(init, jax.random.key(0), x)
    assert replayed == [None]
    sample = init_sampling.eager_sample(DataDependentInit(), ("params",), (x,), {}, params)
    assert sample["scale"].shape == (16,)
    # And compress handles such a model end to end, under jit too.
    compressed = smh_jax.compress(DataDependentInit(), fraction=0.5)
    variables = jax.jit(compressed.init)(jax.random.key(0), x)
    assert compressed.apply(variables, x).shape == (4, 256)


def test_patch_is_undone_when_init_fails():
    class Broken(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.param("w", nn.initializers.zeros, (3,))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with init_sampling.recording([], set()):
            Broken().init(jax.random.key(0), jnp.ones(2))
    assert nn.Module.param is ORIGINAL_PARAM
