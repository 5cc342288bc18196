"""Helpers shared by the model zoo: channel rounding, reference initializers, pooling.

The initializers reproduce the reference implementations (torchvision for ResNets and
MobileNets, the TF EfficientNet code for EfficientNet) so that training recipes taken
from those references behave the same here. Each is a function returning an
initializer (no module-level state); the ones that are not jax's own declare their exact
mean and std (`init_stats`), which SMH uses to scale each hashed tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from smh_jax.core.init_stats import UNIFORM_KURTOSIS, InitStats
from smh_jax.errors import UserError

ModuleDef = Any
Dtype = Any
Initializer = Callable[..., jax.Array]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to a multiple of `divisor`, never dropping more than 10%.

    This is `_make_divisible` of torchvision / `round_filters` of the TF EfficientNet
    code; both the MobileNets and EfficientNet round every (scaled) width with it.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def scale_channels(channels: int, width_multiplier: float) -> int:
    """ResNet width rounding: nearest integer, at least one channel."""
    return max(1, round(channels * width_multiplier))


def kaiming_normal_fan_out() -> Initializer:
    """torchvision's conv init `kaiming_normal_(mode='fan_out', nonlinearity='relu')`.

    Flax kernels are (kh, kw, in/groups, out), so fan_out = kh*kw*out, exactly PyTorch's
    value for (out, in/groups, kh, kw) weights -- including depthwise convs, where
    PyTorch (and hence torchvision's MobileNets) also counts all `out` channels.
    """
    return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def tf_conv_kernel_init(depthwise: bool = False) -> Initializer:
    """EfficientNet's `conv_kernel_initializer`: normal(0, sqrt(2 / fan_out)).

    The TF code takes fan_out = kh*kw*shape[-1] of the TF kernel. For a regular conv that
    is kh*kw*out_channels. A TF depthwise kernel is [kh, kw, in, multiplier], so its
    fan_out is kh*kw*multiplier = kh*kw (multiplier 1); the flax depthwise kernel is
    (kh, kw, 1, C), hence `depthwise=True` drops the channel factor to match TF.
    """

    def std(shape: Sequence[int]) -> float:
        kh, kw, _, out_channels = shape
        return math.sqrt(2.0 / (kh * kw * (1 if depthwise else out_channels)))

    def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.normal(key, shape, dtype) * std(shape)

    init.init_stats = lambda shape: InitStats(0.0, std(shape), 0.0)  # exact, for SMH
    return init


def _uniform_stats(limit: float) -> InitStats:
    return InitStats(0.0, limit / math.sqrt(3.0), UNIFORM_KURTOSIS)


def symmetric_uniform(limit: float) -> Initializer:
    """uniform(-limit, limit), the building block of PyTorch's and TF's dense inits."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    init.init_stats = lambda shape: _uniform_stats(limit)  # exact, for SMH
    return init


def torch_linear_init(fan_in: int) -> tuple[Initializer, Initializer]:
    """PyTorch's default `nn.Linear` init as (kernel_init, bias_init).

    `kaiming_uniform_(a=sqrt(5))` reduces to uniform(+-1/sqrt(fan_in)) for the kernel and
    the bias uses the same bound; a bias shape alone does not reveal fan_in, hence the
    explicit argument.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return symmetric_uniform(bound), symmetric_uniform(bound)


def tf_dense_kernel_init() -> Initializer:
    """EfficientNet's `dense_kernel_initializer`: uniform(+-1/sqrt(num_classes))."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        limit = 1.0 / math.sqrt(shape[-1])
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    init.init_stats = lambda shape: _uniform_stats(1.0 / math.sqrt(shape[-1]))  # exact
    return init


MAX_POOLS = ("tiles", "window")


def max_pool(x: jax.Array, window: int, impl: str = "tiles") -> jax.Array:
    """NHWC max pool over `window` x `window` tiles, stride `window`, 'valid' padding.

    "tiles" reshapes the input into its tiles and takes each tile's max; "window" is
    flax's `nn.max_pool` (lax.reduce_window), whose gradient XLA builds from
    select-and-scatter, an op XLA:CPU runs slowly. Both give the same values and, except
    where a tile holds two equal maxima (tiles splits the gradient between them, window
    routes it to one), the same gradients.
    """
    if impl == "window":
        return nn.max_pool(x, (window, window), strides=(window, window))
    if impl != "tiles":
        raise UserError(f"max_pool={impl!r}: use one of {', '.join(MAX_POOLS)}")
    n, height, width, channels = x.shape
    rows, cols = height // window, width // window  # 'valid': a partial tile is dropped
    x = x[:, :rows * window, :cols * window]
    return x.reshape(n, rows, window, cols, window, channels).max(axis=(2, 4))


def global_avg_pool(x: jax.Array) -> jax.Array:
    """NHWC -> NC mean over the spatial axes."""
    return jnp.mean(x, axis=(1, 2))


def squeeze_excite(
    x: jax.Array,
    reduced_features: int,
    conv: ModuleDef,
    inner_act: Callable[[jax.Array], jax.Array],
    gate_act: Callable[[jax.Array], jax.Array],
    name: str,
) -> jax.Array:
    """Squeeze-and-excitation with 1x1 convs (with bias), as in the TF and torch references.

    Call it from inside a compact method: the two convs bind to the calling module and
    are named `{name}_reduce` / `{name}_expand`.
    """
    features = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = conv(reduced_features, (1, 1), padding=0, use_bias=True, name=f'{name}_reduce')(s)
    s = inner_act(s)
    s = conv(features, (1, 1), padding=0, use_bias=True, name=f'{name}_expand')(s)
    return x * gate_act(s)
