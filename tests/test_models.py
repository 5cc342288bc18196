"""Tests for the model zoo (smh_jax.models).

Parameter counts are checked abstractly (jax.eval_shape: no compute, no compile). Real
compute uses one reduced member per family (width 0.25, fewer blocks, 32x32, small batch); see
`_host_variables` for why most of it starts from numpy-made variables, and `_key` for
the PRNG choice. Compile time dominates this file on CPU.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import traverse_util
from hypothesis import given, settings
from hypothesis import strategies as st

from smh_jax import models
from smh_jax.errors import UserError
from smh_jax.models import efficientnet, layers, mobilenet
from smh_jax.models.spec import ModelSpec, abstract_variables, count_params
from smh_jax.training import config_base

# torchvision's published parameter counts (1000 classes, 3-channel input).
REFERENCE_COUNTS = {
    'resnet18': 11_689_512,
    'resnet34': 21_797_672,
    'resnet50': 25_557_032,
    'resnet101': 44_549_160,
    'resnet152': 60_192_808,
    'efficientnet_b0': 5_288_548,
    'efficientnet_b1': 7_794_184,
    'efficientnet_b2': 9_109_994,
    'efficientnet_b3': 12_233_232,
    'efficientnet_b4': 19_341_616,
    'efficientnet_b5': 30_389_784,
    'efficientnet_b6': 43_040_704,
    'efficientnet_b7': 66_347_960,
    'mobilenet_v2': 3_504_872,
    'mobilenet_v3_large': 5_483_032,
    'mobilenet_v3_small': 2_542_856,
}
# CIFAR ResNets, 10 classes: (exact count of this code, He et al. Table 6 figure in M).
CIFAR_COUNTS = {
    'resnet20': (269_722, 0.27),
    'resnet32': (464_154, 0.46),
    'resnet44': (658_586, 0.66),
    'resnet56': (853_018, 0.85),
    'resnet110': (1_727_962, 1.7),
}
# MNIST networks, 10 classes, 28x28x1 inputs: HashedNets (Chen et al. 2015) and the Caffe
# LeNets (as quoted by Han et al. 2015).
MNIST_COUNTS = {
    'mlp3': 795_010,
    'mlp5': 2_797_010,
    'lenet_300_100': 266_610,
    'lenet5': 431_080,
}
# One reduced member per family for the compute tests.
FAMILIES = ['resnet20', 'resnet18', 'efficientnet_b0', 'mobilenet_v2', 'mobilenet_v3_small']
HAS_DROPOUT = {'efficientnet_b0', 'mobilenet_v2', 'mobilenet_v3_small'}
NUM_CLASSES = 10
WIDTH = 0.25


def _key(seed: int) -> jax.Array:
    """'rbg' keys: random bits compile much faster on CPU than with threefry."""
    return jax.random.key(seed, impl='rbg')


def _abstract_variables(model: nn.Module, size: int = 32, channels: int = 3) -> dict:
    return abstract_variables(model, (1, size, size, channels))


_count = count_params


def _images(batch: int = 2, channels: int = 3, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, 32, 32, channels), jnp.float32)


def _host_variables(model: nn.Module, seed: int = 0) -> dict:
    """Init-like variables made with numpy from the abstract shapes.

    Compiling a real `init` costs several seconds per model on CPU (one RNG program per
    parameter); the compute tests only need sensible values: kernels normal with std
    sqrt(2 / fan_out) for convs and sqrt(1 / fan_in) for dense layers, BN identity.
    The real initializers are tested on their own (`test_reference_initializers`).
    """
    rng = np.random.default_rng(seed)

    def make(path, leaf):
        kind = path[-1].key
        if kind in ('scale', 'var'):
            return jnp.ones(leaf.shape, leaf.dtype)
        if kind in ('bias', 'mean'):
            return jnp.zeros(leaf.shape, leaf.dtype)
        assert kind == 'kernel', path
        fan = math.prod(leaf.shape[:-2]) * leaf.shape[-1] if leaf.ndim == 4 else leaf.shape[0]
        std = math.sqrt((2.0 if leaf.ndim == 4 else 1.0) / fan)
        return jnp.asarray(rng.normal(0.0, std, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(make, _abstract_variables(model))


# Shallower members for the compute tests: every kind of block the family has, fewer of
# each (compiling all 16 EfficientNet-B0 blocks is most of a train step's cost on CPU).
# The full-depth models are covered by the abstract tests above.
SHALLOW = {
    # Its first three stages: no expansion and expansion, 3x3 and 5x5, strided and
    # residual (with drop-connect).
    'efficientnet_b0': lambda **kw: efficientnet.EfficientNet(
        width_coefficient=1.0, depth_coefficient=1.0, stages=efficientnet._B0_STAGES[:3], **kw),
    # No expansion and expansion, strided and residual.
    'mobilenet_v2': lambda **kw: mobilenet.MobileNetV2(
        stages=mobilenet._V2_STAGES[:2], **kw),
    # SE and plain blocks, ReLU and hard-swish, strided and residual.
    'mobilenet_v3_small': lambda **kw: mobilenet.MobileNetV3(
        blocks=mobilenet._V3_SMALL_BLOCKS[:5], last_channel=1024, **kw),
}


def _reduced_model(name: str, dtype: Any = jnp.float32) -> nn.Module:
    if name in SHALLOW:
        return SHALLOW[name](num_classes=NUM_CLASSES, width_multiplier=WIDTH, dtype=dtype)
    return models.create(name, num_classes=NUM_CLASSES, width_multiplier=WIDTH, dtype=dtype)


@pytest.fixture(scope='module')
def reduced():
    """Per family: (float32 model, bfloat16 model, variables), built lazily and shared."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = _reduced_model(name)
            cache[name] = (model, _reduced_model(name, jnp.bfloat16), _host_variables(model))
        return cache[name]

    return get


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize('name', sorted(REFERENCE_COUNTS))
def test_param_count_matches_torchvision(name):
    params = _abstract_variables(models.create(name, num_classes=1000))['params']
    assert _count(params) == REFERENCE_COUNTS[name]


@pytest.mark.parametrize('name', sorted(MNIST_COUNTS))
def test_mnist_param_count_matches_the_published_one(name):
    params = abstract_variables(models.create(name, num_classes=10), (1, 28, 28, 1))['params']
    assert count_params(params) == MNIST_COUNTS[name]


@settings(max_examples=10)
@given(st.integers(1, 3), st.integers(2, 9), st.integers(2, 9), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_tiled_max_pool_matches_flax_window_pool_in_values_and_gradients(
        n, height, width, channels, window, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, height, width, channels)), jnp.float32)  # no ties
    weights = jnp.asarray(rng.normal(size=(n, height // window, width // window, channels)),
                          jnp.float32)

    def loss(impl):
        return lambda x: jnp.sum(layers.max_pool(x, window, impl) * weights)

    np.testing.assert_array_equal(layers.max_pool(x, window, 'tiles'),
                                  layers.max_pool(x, window, 'window'))
    np.testing.assert_array_equal(jax.grad(loss('tiles'))(x), jax.grad(loss('window'))(x))


def test_lenet5_pools_either_way_to_the_same_logits_and_rejects_another_pool():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 28, 28, 1)), jnp.float32)
    tiles, window = (models.create('lenet5', num_classes=10, max_pool=p)
                     for p in ('tiles', 'window'))
    variables = tiles.init(jax.random.key(0), x, train=False)
    np.testing.assert_array_equal(tiles.apply(variables, x, train=False),
                                  window.apply(variables, x, train=False))
    with pytest.raises(UserError, match="max_pool must be one of tiles, window, got 'avg'"):
        models.create('lenet5', max_pool='avg')
    with pytest.raises(UserError, match="max_pool='avg': use one of tiles, window"):
        layers.max_pool(x, 2, 'avg')


def test_mlp_takes_hidden_sizes_and_dropout_only_in_training():
    model = models.create('mlp', num_classes=10, hidden_sizes=(300, 100), dropout_rate=0.5,
                          input_dropout_rate=0.2)
    x = jnp.ones((4, 28, 28, 1))
    variables = model.init(jax.random.key(0), x, train=False)
    assert count_params(variables['params']) == MNIST_COUNTS['lenet_300_100']
    np.testing.assert_array_equal(model.apply(variables, x, train=False),
                                  model.apply(variables, x, train=False))
    a, b = (model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(i)})
            for i in (1, 2))
    assert not np.allclose(a, b)
    narrow = models.create('mlp3', num_classes=10, width_multiplier=0.1)
    assert count_params(abstract_variables(narrow, (1, 28, 28, 1))['params']) == (
        785 * 100 + 101 * 10)
    with pytest.raises(UserError, match='hidden_sizes must be a non-empty list'):
        models.create('mlp', hidden_sizes=())


@pytest.mark.parametrize('name', sorted(CIFAR_COUNTS))
def test_cifar_param_count_matches_paper(name):
    exact, paper_millions = CIFAR_COUNTS[name]
    count = _count(_abstract_variables(models.create(name, num_classes=10))['params'])
    assert count == exact
    # The paper prints two significant digits; the count must round to its figure.
    digits = 2 if paper_millions < 1 else 1
    assert round(count / 1e6, digits) == paper_millions
    if name != 'resnet110':
        # 1,727,962 is 1.6% above the printed "1.7M" (which is rounded, not exact).
        assert abs(count / (paper_millions * 1e6) - 1) < 0.01


def test_resnet8_is_the_family_member_with_one_block_per_stage():
    params = _abstract_variables(models.create('resnet8', num_classes=10))['params']
    assert [k for k in params if k.startswith('layer')] == [
        'layer1_block0', 'layer2_block0', 'layer3_block0']
    assert _count(params) == 75_290


def test_cifar_resnet_option_a_shortcut_is_parameter_free():
    params = _abstract_variables(models.create('resnet20', num_classes=10))['params']
    names = ['/'.join(path) for path in traverse_util.flatten_dict(params)]
    assert not any('downsample' in n for n in names)
    assert params['layer2_block0']['conv1']['kernel'].shape == (3, 3, 16, 32)


def test_counts_independent_of_resolution_and_input_channels_only_change_stem():
    model = models.create('resnet18')
    assert _count(_abstract_variables(model, size=64)['params']) == REFERENCE_COUNTS['resnet18']
    gray = _count(_abstract_variables(model, channels=1)['params'])
    assert gray == REFERENCE_COUNTS['resnet18'] - 7 * 7 * 2 * 64


@pytest.mark.parametrize('name', FAMILIES)
def test_width_multiplier_scales_params(name):
    counts = [
        _count(_abstract_variables(models.create(name, width_multiplier=w))['params'])
        for w in (0.5, 1.0, 1.5)
    ]
    assert counts[0] < counts[1] < counts[2]


def test_width_multiplier_rounding_rules():
    resnet = _abstract_variables(models.create('resnet18', width_multiplier=0.3))['params']
    assert resnet['conv1']['kernel'].shape[-1] == round(64 * 0.3)  # round(c * w)
    effnet = _abstract_variables(models.create('efficientnet_b0', width_multiplier=0.3))
    # make_divisible(9.6, 8): 8 would lose more than 10%, so 16.
    assert effnet['params']['stem_conv']['kernel'].shape[-1] == 16
    assert effnet['params']['block0']['project_conv']['kernel'].shape[-1] == 8  # 4.8 -> 8
    mnv3 = _abstract_variables(models.create('mobilenet_v3_large', width_multiplier=2.0))
    assert mnv3['params']['stem_conv']['kernel'].shape[-1] == 32
    assert mnv3['params']['classifier']['kernel'].shape == (2560, 1000)


def test_params_created_in_forward_order():
    """The compression wrapper relies on init's dict order being the layer order."""
    orders = {}

    def init_and_record(name):
        model = models.create(name, num_classes=10, width_multiplier=WIDTH)

        def f():
            variables = model.init(jax.random.key(0), _images(1), train=False)
            orders[name] = ['/'.join(p) for p in traverse_util.flatten_dict(variables['params'])]
            return variables

        jax.eval_shape(f)  # eval_shape/jit outputs sort keys, so record inside the trace
        return orders[name]

    effnet = init_and_record('efficientnet_b0')
    assert effnet[:3] == ['stem_conv/kernel', 'stem_bn/scale', 'stem_bn/bias']
    assert effnet[-2:] == ['classifier/kernel', 'classifier/bias']
    blocks = [p.split('/')[0] for p in effnet if p.startswith('block')]
    assert list(dict.fromkeys(blocks)) == [f'block{i}' for i in range(16)]
    assert [p for p in effnet if p.startswith('block1/')] == [
        f'block1/{layer}/{param}'
        for layer, param in [
            ('expand_conv', 'kernel'), ('expand_bn', 'scale'), ('expand_bn', 'bias'),
            ('depthwise_conv', 'kernel'), ('depthwise_bn', 'scale'), ('depthwise_bn', 'bias'),
            ('se_reduce', 'kernel'), ('se_reduce', 'bias'),
            ('se_expand', 'kernel'), ('se_expand', 'bias'),
            ('project_conv', 'kernel'), ('project_bn', 'scale'), ('project_bn', 'bias'),
        ]
    ]
    resnet = init_and_record('resnet18')
    top = list(dict.fromkeys(p.split('/')[0] for p in resnet))
    stages = [f'layer{i}_block{j}' for i in range(1, 5) for j in range(2)]
    assert top == ['conv1', 'bn1', *stages, 'fc']
    assert [p for p in resnet if p.startswith('layer2_block0/')][-3:] == [
        'layer2_block0/downsample_conv/kernel',
        'layer2_block0/downsample_bn/scale',
        'layer2_block0/downsample_bn/bias',
    ]


# --------------------------------------------------------------------------- compute


@pytest.mark.parametrize('name', FAMILIES)
def test_bfloat16_layers_compute_in_bfloat16_with_float32_params_and_logits(name, reduced):
    """Traced only (no compile): the dtypes are the program's, not the values'."""
    _, model_bf16, variables = reduced(name)
    logits, state = jax.eval_shape(
        lambda v, x: model_bf16.apply(v, x, train=False, capture_intermediates=True,
                                      mutable=['intermediates']), variables, _images())
    assert logits.shape == (2, NUM_CLASSES) and logits.dtype == jnp.float32
    inner_dtypes = {leaf.dtype for leaf in jax.tree.leaves(state['intermediates'])}
    assert jnp.dtype(jnp.bfloat16) in inner_dtypes
    bf16_params = _abstract_variables(model_bf16)['params']
    assert {leaf.dtype for leaf in jax.tree.leaves(bf16_params)} == {jnp.dtype(jnp.float32)}


# A plain ResNet and the depthwise/squeeze-excite family: the values of both precisions.
# The others' bfloat16 programs are checked by their dtypes above and their float32
# values by their train steps below (one compile each less).
@pytest.mark.parametrize('name', ['resnet20', 'efficientnet_b0'])
def test_bfloat16_logits_agree_with_float32(name, reduced):
    model, model_bf16, variables = reduced(name)
    x = _images()
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    logits_bf16 = jax.jit(lambda v, x: model_bf16.apply(v, x, train=False))(variables, x)
    assert bool(jnp.all(jnp.isfinite(logits))) and bool(jnp.all(jnp.isfinite(logits_bf16)))
    assert float(jnp.max(jnp.abs(logits_bf16 - logits))) < 0.1 * (
        1.0 + float(jnp.max(jnp.abs(logits)))
    )


@pytest.mark.parametrize('name', FAMILIES)
def test_train_step(name, reduced):
    model, _, variables = reduced(name)
    tx = optax.sgd(0.1, momentum=0.9)
    x = _images(batch=4, seed=1)
    labels = jnp.arange(4) % NUM_CLASSES

    @jax.jit
    def train_step(variables, opt_state, dropout_key):
        def loss_fn(params):
            logits, updates = model.apply(
                {'params': params, 'batch_stats': variables['batch_stats']},
                x,
                train=True,
                mutable=['batch_stats'],
                rngs={'dropout': dropout_key},
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, updates['batch_stats']

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables['params']
        )
        updates, opt_state = tx.update(grads, opt_state, variables['params'])
        params = optax.apply_updates(variables['params'], updates)
        return {'params': params, 'batch_stats': batch_stats}, opt_state, loss

    opt_state = tx.init(variables['params'])
    new_variables, _, loss = train_step(variables, opt_state, _key(1))
    assert np.isfinite(float(loss))
    assert set(new_variables) == {'params', 'batch_stats'}

    def changed(a, b):
        return any(not np.allclose(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                            strict=True))

    assert changed(variables['batch_stats'], new_variables['batch_stats'])
    assert changed(variables['params'], new_variables['params'])
    # Dropout / drop-connect draw from the 'dropout' rng only in training.
    _, _, other_loss = train_step(variables, opt_state, _key(2))
    assert (float(loss) != float(other_loss)) == (name in HAS_DROPOUT)


def test_dropout_rng_required_only_in_training():
    model = models.create('efficientnet_b0', num_classes=10, width_multiplier=WIDTH)
    variables = _abstract_variables(model)
    x = _images()
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert out.shape == (2, 10)
    with pytest.raises(flax.errors.InvalidRngError):
        jax.eval_shape(
            lambda v: model.apply(v, x, train=True, mutable=['batch_stats']), variables
        )


@pytest.mark.parametrize('name', FAMILIES)
def test_accepts_any_input_channel_count(name):
    model = models.create(name, num_classes=7, width_multiplier=WIDTH)
    x = jnp.zeros((3, 32, 32, 1))
    variables = _abstract_variables(model, channels=1)
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert out.shape == (3, 7) and out.dtype == jnp.float32


def _real_init(name: str, pick=lambda variables: variables):
    """Runs the model's real `init` (jitted; `pick` lets XLA drop unneeded parameters)."""
    model = models.create(name, num_classes=NUM_CLASSES, width_multiplier=WIDTH)
    x = _images()
    return jax.jit(lambda key: pick(model.init(key, x, train=False)))(_key(0))


def test_real_init_and_forward():
    model = models.create('resnet20', num_classes=NUM_CLASSES, width_multiplier=WIDTH)
    variables = _real_init('resnet20')
    abstract = _abstract_variables(model)
    assert jax.tree.structure(variables) == jax.tree.structure(abstract)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(variables))
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, _images())
    assert logits.shape == (2, NUM_CLASSES) and bool(jnp.all(jnp.isfinite(logits)))


def test_reference_initializers():
    resnet = _real_init('resnet20', lambda v: v['params'])
    kernel = np.asarray(resnet['layer3_block1']['conv2']['kernel'])  # 3x3, 16 -> 16
    expected = math.sqrt(2.0 / (3 * 3 * kernel.shape[-1]))  # kaiming normal, fan_out
    assert abs(kernel.std() / expected - 1) < 0.1
    fc = resnet['fc']
    bound = 1 / math.sqrt(fc['kernel'].shape[0])  # PyTorch nn.Linear default
    assert float(jnp.max(jnp.abs(fc['kernel']))) <= bound
    assert 0 < float(jnp.max(jnp.abs(fc['bias']))) <= bound
    assert np.all(np.asarray(resnet['bn1']['scale']) == 1)

    head, dw = _real_init(
        'efficientnet_b0',
        lambda v: (v['params']['classifier'], v['params']['block15']['depthwise_conv']['kernel']),
    )
    bound = 1 / math.sqrt(NUM_CLASSES)  # TF dense_kernel_initializer
    assert 0.5 * bound < float(jnp.max(jnp.abs(head['kernel']))) <= bound
    assert not np.any(np.asarray(head['bias']))
    assert dw.shape[:3] == (3, 3, 1)
    # TF depthwise fan_out = kh * kw * multiplier (not times the channel count).
    assert abs(float(dw.std()) / math.sqrt(2.0 / 9) - 1) < 0.1

    dw, pre_classifier, stem_bn = _real_init(
        'mobilenet_v3_small',
        lambda v: (
            v['params']['block10']['depthwise_conv']['kernel'],
            v['params']['pre_classifier'],
            v['batch_stats']['stem_bn'],
        ),
    )
    assert dw.shape[:3] == (5, 5, 1)
    # torchvision (PyTorch) fan_out for a depthwise kernel counts all C output channels.
    assert abs(float(dw.std()) / math.sqrt(2.0 / (25 * dw.shape[-1])) - 1) < 0.1
    assert abs(float(pre_classifier['kernel'].std()) / 0.01 - 1) < 0.1
    assert not np.any(np.asarray(pre_classifier['bias']))
    assert np.all(np.asarray(stem_bn['var']) == 1) and not np.any(np.asarray(stem_bn['mean']))


def test_batchnorm_settings():
    """BN momentum/epsilon per family, and running averages used exactly when not training."""
    expected = {
        'resnet20': (0.9, 1e-5),
        'resnet18': (0.9, 1e-5),
        'efficientnet_b0': (0.99, 1e-3),
        'mobilenet_v2': (0.9, 1e-5),
        'mobilenet_v3_small': (0.99, 1e-3),
    }
    for name, (momentum, epsilon) in expected.items():
        model = models.create(name, num_classes=10, width_multiplier=WIDTH)
        for train in (False, True):
            seen = set()

            def record(next_fun, args, kwargs, context, seen=seen):
                if isinstance(context.module, nn.BatchNorm):
                    bn = context.module
                    seen.add((bn.momentum, bn.epsilon, bn.use_running_average))
                return next_fun(*args, **kwargs)

            def init(model=model, train=train):
                return model.init(jax.random.key(0), _images(1), train=train)

            with nn.intercept_methods(record):
                jax.eval_shape(init)
            assert seen == {(momentum, epsilon, not train)}, name


# --------------------------------------------------------------------------- registry


def test_registry_names_and_resolutions():
    expected = sorted(
        ['resnet8', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110']
        + ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']
        + [f'efficientnet_b{i}' for i in range(8)]
        + ['mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small']
        + ['mlp', 'mlp3', 'mlp5', 'lenet_300_100', 'lenet5']
    )
    assert models.names() == expected
    resolutions = [224, 240, 260, 300, 380, 456, 528, 600]
    assert [models.default_resolution(f'efficientnet_b{i}') for i in range(8)] == resolutions
    assert models.default_resolution('resnet50') == 224
    assert models.default_resolution('mobilenet_v3_small') == 224
    assert models.default_resolution('resnet56') == 32
    for name in models.names():
        assert isinstance(models.create(name), nn.Module)


def test_registry_overrides():
    model = models.create('efficientnet_b3', dropout_rate=0.1, drop_connect_rate=0.0)
    assert (model.dropout_rate, model.drop_connect_rate) == (0.1, 0.0)
    assert models.create('efficientnet_b3').dropout_rate == 0.3
    assert models.create('mobilenet_v2', dropout_rate=0.5).dropout_rate == 0.5
    assert models.create('mobilenet_v3_large', dropout_rate=0.0).dropout_rate == 0.0
    model = models.create('resnet50', num_classes=5, width_multiplier=0.5, dtype=jnp.bfloat16)
    assert (model.num_classes, model.width_multiplier, model.dtype) == (5, 0.5, jnp.bfloat16)


@pytest.mark.parametrize(
    'kwargs, fragments',
    [
        ({'name': 'resnet19'}, ["'resnet19'", 'resnet18', 'efficientnet_b7']),
        ({'name': 'resnet18', 'width_multiplier': 0}, ['width_multiplier', '> 0', '0']),
        ({'name': 'resnet18', 'width_multiplier': -1.5}, ['width_multiplier', '-1.5']),
        ({'name': 'resnet18', 'width_multiplier': float('nan')}, ['width_multiplier', 'nan']),
        ({'name': 'resnet18', 'num_classes': 0}, ['num_classes', '>= 1', '0']),
        ({'name': 'resnet18', 'num_classes': 2.5}, ['num_classes', '2.5']),
        ({'name': 'resnet18', 'dropout_rate': 0.1}, ["'dropout_rate'", 'none']),
        ({'name': 'mobilenet_v2', 'drop_connect_rate': 0.1}, ["'drop_connect_rate'"]),
        ({'name': 'efficientnet_b0', 'dropout_rate': 1.5}, ['dropout_rate', '[0, 1)', '1.5']),
    ],
)
def test_registry_errors(kwargs, fragments):
    with pytest.raises(ValueError) as info:
        models.create(**kwargs)
    assert isinstance(info.value, UserError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_default_resolution_unknown_name():
    with pytest.raises(ValueError, match="'vgg16'.*resnet50"):
        models.default_resolution('vgg16')


def test_package_import_is_cheap():
    """Importing smh_jax.models must not import the model modules or build anything."""
    code = (
        'import sys, smh_jax.models as m; '
        "assert not [k for k in sys.modules if k.startswith('smh_jax.models.')], 'eager'; "
        'print(len(m.names()))'
    )
    result = subprocess.run(
        [sys.executable, '-c', code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(models.names()))


@pytest.mark.parametrize('name', FAMILIES)
def test_min_image_size_is_total_stride(name):
    stride = models.min_image_size(name)
    assert stride == (4 if name == 'resnet20' else 32)
    model = models.create(name, num_classes=10, width_multiplier=WIDTH)
    conv_outputs = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Conv) and context.method_name == '__call__':
            conv_outputs.append(out.shape)
        return out

    with nn.intercept_methods(record):
        _abstract_variables(model, size=2 * stride)
    assert conv_outputs[-1][1:3] == (2, 2)


# --------------------------------------------------------------------------- model spec


def test_model_spec_round_trips_through_json_and_builds_the_registry_model():
    spec = ModelSpec('efficientnet_b0', num_classes=7, width_multiplier=0.5, dtype='bfloat16',
                     overrides={'dropout_rate': 0.1})
    assert ModelSpec.from_json(spec.to_json()) == spec
    module = spec.create()
    assert (module.num_classes, module.width_multiplier, module.dropout_rate) == (7, 0.5, 0.1)
    assert module.dtype == jnp.bfloat16
    # Older files may omit width, dtype and overrides.
    assert ModelSpec.from_json({'name': 'resnet20', 'num_classes': 10}) == ModelSpec(
        'resnet20', 10)
    with pytest.raises(UserError, match='model.num_classes is missing'):
        ModelSpec.from_json({'name': 'resnet20'})
    with pytest.raises(UserError, match='model.depth is not a field'):
        ModelSpec.from_json({'name': 'resnet20', 'num_classes': 10, 'depth': 20})


def test_config_model_max_pool_reaches_lenet5_and_a_bad_one_is_named_at_validation():
    config = config_base.base_config()
    config.model.name = 'lenet5'
    assert ModelSpec.from_config(config.model, 10).create().max_pool == 'tiles'
    config.model.max_pool = 'window'
    config_base.validate(config)
    spec = ModelSpec.from_config(config.model, 10)
    assert spec.overrides == {'max_pool': 'window'} and spec.create().max_pool == 'window'
    for name, value, message in (
            ('lenet5', 'avg', "config.model: max_pool must be one of tiles, window, got 'avg'"),
            ('lenet5', 2, 'config.model.max_pool: 2 has type int; expected str'),
            ('resnet32', 'window', "config.model: model 'resnet32' has no option 'max_pool'")):
        config.model.name = name
        with config.model.ignore_type():
            config.model.max_pool = value
        with pytest.raises(UserError, match=re.escape(message)):
            config_base.validate(config)
