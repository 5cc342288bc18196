"""EfficientNet B0-B7 (Tan & Le 2019), following the TF reference implementation.

Architecture, rounding and parameter counts match both the TF reference and
torchvision: MBConv blocks with squeeze-excitation (reduced width from the block *input*
channels, `max(1, int(in * 0.25))`), swish, widths `make_divisible(c * width, 8)`, depths
`ceil(d * depth_coefficient)`. Initializers, BN momentum/epsilon, dropout and
drop-connect (stochastic depth, `rate * block_index / num_blocks`, per sample) follow
the TF reference. Conv padding is symmetric k//2 (torchvision) rather than TF "SAME";
it changes no parameter.

`width_multiplier` multiplies the variant's width coefficient (1.0 = the paper).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from smh_jax.models.layers import (
    Dtype,
    ModuleDef,
    global_avg_pool,
    make_divisible,
    squeeze_excite,
    tf_conv_kernel_init,
    tf_dense_kernel_init,
)

# B0 stages: (expand_ratio, kernel, stride, out_channels, repeats). Immutable.
_B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, SE, 1x1 project (+ drop-connect)."""

    out_features: int
    expand_ratio: int
    kernel_size: int
    strides: int
    drop_connect_rate: float
    conv: ModuleDef
    norm: ModuleDef
    se_ratio: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        in_features = x.shape[-1]
        expanded = make_divisible(in_features * self.expand_ratio, 8)
        y = x
        if self.expand_ratio != 1:
            y = self.conv(expanded, (1, 1), padding=0, name='expand_conv')(y)
            y = nn.swish(self.norm(name='expand_bn')(y))
        k = self.kernel_size
        y = self.conv(
            expanded,
            (k, k),
            self.strides,
            padding=k // 2,
            feature_group_count=expanded,
            kernel_init=tf_conv_kernel_init(depthwise=True),
            name='depthwise_conv',
        )(y)
        y = nn.swish(self.norm(name='depthwise_bn')(y))
        reduced = max(1, int(in_features * self.se_ratio))
        y = squeeze_excite(y, reduced, self.conv, nn.swish, nn.sigmoid, name='se')
        y = self.conv(self.out_features, (1, 1), padding=0, name='project_conv')(y)
        y = self.norm(name='project_bn')(y)
        if self.strides == 1 and in_features == self.out_features:
            # Drop-connect: drop the whole residual branch per sample, rescale survivors.
            y = nn.Dropout(self.drop_connect_rate, broadcast_dims=(1, 2, 3))(
                y, deterministic=not train
            )
            y = y + x
        return y


class EfficientNet(nn.Module):
    """EfficientNet with compound scaling; NHWC input with any number of channels."""

    width_coefficient: float
    depth_coefficient: float
    stages: Sequence[tuple[int, int, int, int, int]]  # B0's table (Tan & Le Table 1)
    dropout_rate: float = 0.2
    drop_connect_rate: float = 0.2
    num_classes: int = 1000
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        width = self.width_coefficient * self.width_multiplier
        conv = functools.partial(
            nn.Conv,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=tf_conv_kernel_init(),
        )
        # TF BN momentum 0.99 (= flax momentum, the weight of the old running value).
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.99,
            epsilon=1e-3,
            dtype=self.dtype,
            param_dtype=jnp.float32,
        )

        x = jnp.asarray(x, self.dtype)
        x = conv(make_divisible(32 * width), (3, 3), 2, padding=1, name='stem_conv')(x)
        x = nn.swish(norm(name='stem_bn')(x))

        stages = [
            (t, k, s, make_divisible(c * width), math.ceil(n * self.depth_coefficient))
            for t, k, s, c, n in self.stages
        ]
        num_blocks = sum(stage[-1] for stage in stages)
        index = 0
        for t, k, s, c, n in stages:
            for j in range(n):
                x = MBConv(
                    out_features=c,
                    expand_ratio=t,
                    kernel_size=k,
                    strides=s if j == 0 else 1,
                    drop_connect_rate=self.drop_connect_rate * index / num_blocks,
                    conv=conv,
                    norm=norm,
                    name=f'block{index}',
                )(x, train=train)
                index += 1

        x = conv(make_divisible(1280 * width), (1, 1), padding=0, name='head_conv')(x)
        x = nn.swish(norm(name='head_bn')(x))
        x = global_avg_pool(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=tf_dense_kernel_init(),
            bias_init=nn.initializers.zeros,
            name='classifier',
        )(x)
        return x.astype(jnp.float32)


# B0's stages scaled by (width, depth), with their dropout; resolutions
# 224/240/260/300/380/456/528/600 live in the registry.
_B0Scaled = functools.partial(EfficientNet, stages=_B0_STAGES)
EfficientNetB0 = functools.partial(
    _B0Scaled, width_coefficient=1.0, depth_coefficient=1.0, dropout_rate=0.2
)
EfficientNetB1 = functools.partial(
    _B0Scaled, width_coefficient=1.0, depth_coefficient=1.1, dropout_rate=0.2
)
EfficientNetB2 = functools.partial(
    _B0Scaled, width_coefficient=1.1, depth_coefficient=1.2, dropout_rate=0.3
)
EfficientNetB3 = functools.partial(
    _B0Scaled, width_coefficient=1.2, depth_coefficient=1.4, dropout_rate=0.3
)
EfficientNetB4 = functools.partial(
    _B0Scaled, width_coefficient=1.4, depth_coefficient=1.8, dropout_rate=0.4
)
EfficientNetB5 = functools.partial(
    _B0Scaled, width_coefficient=1.6, depth_coefficient=2.2, dropout_rate=0.4
)
EfficientNetB6 = functools.partial(
    _B0Scaled, width_coefficient=1.8, depth_coefficient=2.6, dropout_rate=0.5
)
EfficientNetB7 = functools.partial(
    _B0Scaled, width_coefficient=2.0, depth_coefficient=3.1, dropout_rate=0.5
)
