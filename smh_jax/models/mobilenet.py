"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3 Large/Small (Howard et al. 2019).

Layouts, classifier heads, initializers and BatchNorm settings follow torchvision, so
parameter counts match it exactly: convs kaiming-normal fan_out (PyTorch's fan_out,
which for depthwise kernels counts every output channel), linear layers normal(0, 0.01)
with zero bias. BN: V2 uses PyTorch defaults (momentum 0.1 -> flax 0.9, eps 1e-5); V3
uses momentum 0.01 -> flax 0.99, eps 1e-3. Conv padding is symmetric k//2.

`width_multiplier` scales every width with `make_divisible(c * w, 8)`, as torchvision.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from smh_jax.models.layers import (
    Dtype,
    ModuleDef,
    global_avg_pool,
    kaiming_normal_fan_out,
    make_divisible,
    squeeze_excite,
)

# V3 block rows: (kernel, expanded, out, use_se, activation 'RE'|'HS', stride), Howard
# et al. Tables 1 and 2. The first block's input is the 16-channel stem.
_V3_LARGE_BLOCKS = (
    (3, 16, 16, False, 'RE', 1),
    (3, 64, 24, False, 'RE', 2),
    (3, 72, 24, False, 'RE', 1),
    (5, 72, 40, True, 'RE', 2),
    (5, 120, 40, True, 'RE', 1),
    (5, 120, 40, True, 'RE', 1),
    (3, 240, 80, False, 'HS', 2),
    (3, 200, 80, False, 'HS', 1),
    (3, 184, 80, False, 'HS', 1),
    (3, 184, 80, False, 'HS', 1),
    (3, 480, 112, True, 'HS', 1),
    (3, 672, 112, True, 'HS', 1),
    (5, 672, 160, True, 'HS', 2),
    (5, 960, 160, True, 'HS', 1),
    (5, 960, 160, True, 'HS', 1),
)
_V3_SMALL_BLOCKS = (
    (3, 16, 16, True, 'RE', 2),
    (3, 72, 24, False, 'RE', 2),
    (3, 88, 24, False, 'RE', 1),
    (5, 96, 40, True, 'HS', 2),
    (5, 240, 40, True, 'HS', 1),
    (5, 240, 40, True, 'HS', 1),
    (5, 120, 48, True, 'HS', 1),
    (5, 144, 48, True, 'HS', 1),
    (5, 288, 96, True, 'HS', 2),
    (5, 576, 96, True, 'HS', 1),
    (5, 576, 96, True, 'HS', 1),
)
# V2 stages: (expand_ratio t, out channels c, repeats n, first stride s), Sandler Table 2.
_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _torch_style_layers(
    dtype: Dtype, train: bool, momentum: float, epsilon: float
) -> tuple[ModuleDef, ModuleDef, ModuleDef]:
    """Conv (no bias), BN and Dense partials with torchvision's MobileNet inits."""
    conv = functools.partial(
        nn.Conv,
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kaiming_normal_fan_out(),
    )
    norm = functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
    )
    dense = functools.partial(
        nn.Dense,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.initializers.normal(0.01),
        bias_init=nn.initializers.zeros,
    )
    return conv, norm, dense


class InvertedResidualV2(nn.Module):
    """1x1 expand + ReLU6, 3x3 depthwise + ReLU6, linear 1x1 project; identity if shapes match."""

    out_features: int
    expand_ratio: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        hidden = round(in_features * self.expand_ratio)
        y = x
        if self.expand_ratio != 1:
            y = self.conv(hidden, (1, 1), padding=0, name='expand_conv')(y)
            y = nn.relu6(self.norm(name='expand_bn')(y))
        y = self.conv(
            hidden, (3, 3), self.strides, padding=1, feature_group_count=hidden,
            name='depthwise_conv',
        )(y)
        y = nn.relu6(self.norm(name='depthwise_bn')(y))
        y = self.conv(self.out_features, (1, 1), padding=0, name='project_conv')(y)
        y = self.norm(name='project_bn')(y)
        if self.strides == 1 and in_features == self.out_features:
            y = y + x
        return y


class MobileNetV2(nn.Module):
    """MobileNetV2, torchvision layout; NHWC input with any number of channels. The
    architecture is given by its stage table (`MobileNetV2Standard`: Sandler Table 2)."""

    stages: Sequence[tuple[int, int, int, int]]
    num_classes: int = 1000
    width_multiplier: float = 1.0
    dropout_rate: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm, dense = _torch_style_layers(self.dtype, train, momentum=0.9, epsilon=1e-5)
        w = self.width_multiplier
        x = jnp.asarray(x, self.dtype)
        x = conv(make_divisible(32 * w), (3, 3), 2, padding=1, name='stem_conv')(x)
        x = nn.relu6(norm(name='stem_bn')(x))
        index = 0
        for t, c, n, s in self.stages:
            for j in range(n):
                x = InvertedResidualV2(
                    out_features=make_divisible(c * w),
                    expand_ratio=t,
                    strides=s if j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    name=f'block{index}',
                )(x)
                index += 1
        # torchvision never shrinks the last layer below 1280 channels.
        last = make_divisible(1280 * max(1.0, w))
        x = conv(last, (1, 1), padding=0, name='head_conv')(x)
        x = nn.relu6(norm(name='head_bn')(x))
        x = global_avg_pool(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = dense(self.num_classes, name='classifier')(x)
        return x.astype(jnp.float32)


def _activation(kind: str) -> Callable[[jax.Array], jax.Array]:
    return {'RE': nn.relu, 'HS': nn.hard_swish}[kind]


class InvertedResidualV3(nn.Module):
    """V3 bneck: optional 1x1 expand, depthwise kxk, optional hard-sigmoid SE, 1x1 project."""

    kernel_size: int
    expanded: int
    out_features: int
    use_se: bool
    activation: str
    strides: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        in_features = x.shape[-1]
        y = x
        if self.expanded != in_features:
            y = self.conv(self.expanded, (1, 1), padding=0, name='expand_conv')(y)
            y = act(self.norm(name='expand_bn')(y))
        k = self.kernel_size
        y = self.conv(
            self.expanded, (k, k), self.strides, padding=k // 2,
            feature_group_count=self.expanded, name='depthwise_conv',
        )(y)
        y = act(self.norm(name='depthwise_bn')(y))
        if self.use_se:
            reduced = make_divisible(self.expanded // 4)
            y = squeeze_excite(y, reduced, self.conv, nn.relu, nn.hard_sigmoid, name='se')
        y = self.conv(self.out_features, (1, 1), padding=0, name='project_conv')(y)
        y = self.norm(name='project_bn')(y)
        if self.strides == 1 and in_features == self.out_features:
            y = y + x
        return y


class MobileNetV3(nn.Module):
    """MobileNetV3, torchvision layout; the variant is given by its block table."""

    blocks: Sequence[tuple[int, int, int, bool, str, int]]
    last_channel: int
    num_classes: int = 1000
    width_multiplier: float = 1.0
    dropout_rate: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm, dense = _torch_style_layers(self.dtype, train, momentum=0.99, epsilon=1e-3)
        w = self.width_multiplier
        x = jnp.asarray(x, self.dtype)
        x = conv(make_divisible(16 * w), (3, 3), 2, padding=1, name='stem_conv')(x)
        x = nn.hard_swish(norm(name='stem_bn')(x))
        for index, (k, expanded, out, use_se, activation, stride) in enumerate(self.blocks):
            x = InvertedResidualV3(
                kernel_size=k,
                expanded=make_divisible(expanded * w),
                out_features=make_divisible(out * w),
                use_se=use_se,
                activation=activation,
                strides=stride,
                conv=conv,
                norm=norm,
                name=f'block{index}',
            )(x)
        x = conv(6 * x.shape[-1], (1, 1), padding=0, name='head_conv')(x)
        x = nn.hard_swish(norm(name='head_bn')(x))
        x = global_avg_pool(x)
        x = dense(make_divisible(self.last_channel * w), name='pre_classifier')(x)
        x = nn.hard_swish(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = dense(self.num_classes, name='classifier')(x)
        return x.astype(jnp.float32)


MobileNetV2Standard = functools.partial(MobileNetV2, stages=_V2_STAGES)
MobileNetV3Large = functools.partial(MobileNetV3, blocks=_V3_LARGE_BLOCKS, last_channel=1280)
MobileNetV3Small = functools.partial(MobileNetV3, blocks=_V3_SMALL_BLOCKS, last_channel=1024)
