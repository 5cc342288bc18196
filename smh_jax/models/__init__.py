"""Model zoo: plain flax.linen image classifiers, usable with or without SMH compression.

    import smh_jax.models as models
    model = models.create('resnet50', num_classes=1000, width_multiplier=1.0)
    variables = model.init(rng, x, train=False)       # x: NHWC, any channel count
    logits = model.apply(variables, x, train=False)   # (batch, num_classes), float32

Training: `model.apply(variables, x, train=True, mutable=['batch_stats'],
rngs={'dropout': key})`. Importing this package is cheap: the model modules are imported
on the first `create`.

Flax NNX twins (same layers, names, initializers, counts and creation order; see
`nnx_names()`) are built, with their parameters, by `create_nnx`:

    model = models.create_nnx('resnet20', (32, 32, 3), rngs=nnx.Rngs(0), num_classes=10)
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from typing import Any

import jax.numpy as jnp

from smh_jax.errors import UserError

__all__ = ['create', 'create_nnx', 'default_resolution', 'min_image_size', 'names',
           'nnx_names']

# name -> (module under smh_jax.models, factory in it, default input resolution,
#          total stride: input pixels per side of one final feature-map pixel).
_REGISTRY: dict[str, tuple[str, str, int, int]] = {
    'resnet8': ('resnet', 'ResNet8', 32, 4),
    'resnet20': ('resnet', 'ResNet20', 32, 4),
    'resnet32': ('resnet', 'ResNet32', 32, 4),
    'resnet44': ('resnet', 'ResNet44', 32, 4),
    'resnet56': ('resnet', 'ResNet56', 32, 4),
    'resnet110': ('resnet', 'ResNet110', 32, 4),
    'resnet18': ('resnet', 'ResNet18', 224, 32),
    'resnet34': ('resnet', 'ResNet34', 224, 32),
    'resnet50': ('resnet', 'ResNet50', 224, 32),
    'resnet101': ('resnet', 'ResNet101', 224, 32),
    'resnet152': ('resnet', 'ResNet152', 224, 32),
    'efficientnet_b0': ('efficientnet', 'EfficientNetB0', 224, 32),
    'efficientnet_b1': ('efficientnet', 'EfficientNetB1', 240, 32),
    'efficientnet_b2': ('efficientnet', 'EfficientNetB2', 260, 32),
    'efficientnet_b3': ('efficientnet', 'EfficientNetB3', 300, 32),
    'efficientnet_b4': ('efficientnet', 'EfficientNetB4', 380, 32),
    'efficientnet_b5': ('efficientnet', 'EfficientNetB5', 456, 32),
    'efficientnet_b6': ('efficientnet', 'EfficientNetB6', 528, 32),
    'efficientnet_b7': ('efficientnet', 'EfficientNetB7', 600, 32),
    'mobilenet_v2': ('mobilenet', 'MobileNetV2Standard', 224, 32),
    'mobilenet_v3_large': ('mobilenet', 'MobileNetV3Large', 224, 32),
    'mobilenet_v3_small': ('mobilenet', 'MobileNetV3Small', 224, 32),
    # MNIST (28x28): HashedNets' MLPs, the Caffe LeNets. `mlp` takes `hidden_sizes`.
    'mlp': ('mlp', 'MLP', 28, 1),
    'mlp3': ('mlp', 'MLP3', 28, 1),
    'mlp5': ('mlp', 'MLP5', 28, 1),
    'lenet_300_100': ('mlp', 'LeNet300100', 28, 1),
    'lenet5': ('lenet', 'LeNet5', 28, 16),
}

# NNX twins: name -> (module under smh_jax.models, factory in it). Each takes the options
# of its linen model, plus the input shape (H, W, C) and `rngs`.
_NNX_REGISTRY: dict[str, tuple[str, str]] = {
    'resnet8': ('nnx_resnet', 'ResNet8'),
    'resnet20': ('nnx_resnet', 'ResNet20'),
    'resnet32': ('nnx_resnet', 'ResNet32'),
    'resnet44': ('nnx_resnet', 'ResNet44'),
    'resnet56': ('nnx_resnet', 'ResNet56'),
    'resnet110': ('nnx_resnet', 'ResNet110'),
    'mlp': ('nnx_mlp', 'MLP'),
    'mlp3': ('nnx_mlp', 'MLP3'),
    'mlp5': ('nnx_mlp', 'MLP5'),
    'lenet_300_100': ('nnx_mlp', 'LeNet300100'),
    'lenet5': ('nnx_lenet', 'LeNet5'),
}


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def nnx_names() -> list[str]:
    """The registered models that have an NNX twin (`create_nnx`), sorted."""
    return sorted(_NNX_REGISTRY)


def _entry(name: str) -> tuple[str, str, int, int]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UserError(f'unknown model {name!r}; allowed: {", ".join(names())}')
    return _REGISTRY[name]


def default_resolution(name: str) -> int:
    """Input side length the model was designed for (EfficientNet: 224..600)."""
    return _entry(name)[2]


def min_image_size(name: str) -> int:
    """Smallest input side that still maps to a >= 1x1 final feature map of real pixels.

    This is the network's total stride (4 for CIFAR ResNets, 32 otherwise). Smaller
    inputs still run (padding keeps every map at least 1x1), but the last stages then
    see mostly padding.
    """
    return _entry(name)[3]


def _max_pools() -> tuple[str, ...]:
    from smh_jax.models.layers import MAX_POOLS  # layers imports flax: not at package import
    return MAX_POOLS


def _check_overrides(name: str, factory: Any, overrides: dict[str, Any]) -> None:
    """Rejects unknown or out-of-range overrides with a message naming them.

    Overridable: the model class's fields that have a default (training options such as
    `dropout_rate`); architecture fields (block tables, depths, coefficients) have none.
    """
    cls = getattr(factory, 'func', factory)  # variants are functools.partial(Class, ...)
    fixed = {'num_classes', 'width_multiplier', 'dtype', 'parent', 'name'}
    allowed = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in fixed
        and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
    )
    for key, value in overrides.items():
        if key not in allowed:
            raise UserError(
                f'model {name!r} has no option {key!r}; allowed: {", ".join(allowed) or "none"}'
            )
        if key in ('hidden_sizes', 'ranks') and not (
            isinstance(value, (tuple, list)) and value
            and all(isinstance(h, numbers.Integral) and not isinstance(h, bool)
                    and h >= (0 if key == 'ranks' else 1) for h in value)
        ):
            raise UserError(f'{key} must be a non-empty list of integers >= '
                            f'{0 if key == "ranks" else 1}, got {value!r}')
        if key == 'max_pool' and value not in (pools := _max_pools()):
            raise UserError(f'max_pool must be one of {", ".join(pools)}, got {value!r}')
        if key.endswith('_rate') and not (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1
        ):
            raise UserError(f'{key} must be a number in [0, 1), got {value!r}')


def _checked_factory(name: str, num_classes: Any, width_multiplier: Any,
                     overrides: dict[str, Any]) -> Any:
    """The linen factory of `name`, after checking every argument (UserError otherwise)."""
    module_name, factory_name, _, _ = _entry(name)
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
    ):
        raise UserError(f'num_classes must be an integer >= 1, got {num_classes!r}')
    if (
        isinstance(width_multiplier, bool)
        or not isinstance(width_multiplier, numbers.Real)
        or not math.isfinite(width_multiplier)
        or width_multiplier <= 0
    ):
        raise UserError(f'width_multiplier must be a finite number > 0, got {width_multiplier!r}')
    factory = getattr(importlib.import_module(f'{__name__}.{module_name}'), factory_name)
    _check_overrides(name, factory, overrides)
    return factory


def create(
    name: str,
    num_classes: int = 1000,
    width_multiplier: float = 1.0,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> Any:
    """Builds the named model (a flax.linen Module); nothing is initialized here.

    `width_multiplier` scales every width (1.0 = the paper's model); `dtype` is the
    compute dtype, parameters stay float32. `overrides` are extra constructor options:
    `dropout_rate` / `drop_connect_rate` for EfficientNet, `dropout_rate` for MobileNets,
    `dropout_rate` / `input_dropout_rate` / `hidden_sizes` for the MLPs, `max_pool` (the
    pooling's implementation, layers.max_pool) for LeNet-5.
    Bad values raise `UserError` (a ValueError) naming the value and what is allowed.
    """
    factory = _checked_factory(name, num_classes, width_multiplier, overrides)
    return factory(
        num_classes=int(num_classes),
        width_multiplier=float(width_multiplier),
        dtype=dtype,
        **overrides,
    )


def create_nnx(
    name: str,
    input_shape: Any,
    *,
    rngs: Any,
    num_classes: int = 1000,
    width_multiplier: float = 1.0,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> Any:
    """Builds the NNX twin of the named model (an nnx.Module, parameters drawn from `rngs`).

    `input_shape` is one example's (H, W, C); the other arguments are `create`'s, checked
    the same way. Dropout draws from the 'dropout' stream of `rngs` (or its default).
    """
    _checked_factory(name, num_classes, width_multiplier, overrides)
    if name not in _NNX_REGISTRY:
        raise UserError(f'model {name!r} has no NNX twin; models with one: '
                        f'{", ".join(nnx_names())}')
    module_name, factory_name = _NNX_REGISTRY[name]
    factory = getattr(importlib.import_module(f'{__name__}.{module_name}'), factory_name)
    return factory(
        input_shape=tuple(int(d) for d in input_shape),
        num_classes=int(num_classes),
        width_multiplier=float(width_multiplier),
        dtype=dtype,
        rngs=rngs,
        **overrides,
    )
