"""ResNets: the ImageNet family (torchvision v1.5) and the CIFAR family (He et al. 2016).

ImageNet ResNets follow torchvision: 7x7/2 stem + 3x3/2 max pool, projection shortcuts
(1x1 conv + BN) whenever the shape changes, and in bottlenecks the stride sits on the
3x3 conv ("v1.5"). CIFAR ResNets follow He et al. 2016, Sec. 4.2: a 3x3 stem with 16
channels, three stages of n basic blocks with 16/32/64 channels (depth 6n+2), and
parameter-free "option A" shortcuts (stride-2 subsampling + zero channel padding),
the variant that gives the paper's 0.27M/0.46M/0.66M/0.85M/1.7M parameter counts.

Conv padding is symmetric k//2 as in PyTorch (not TF "SAME"), so torchvision weights
map one to one. `width_multiplier` scales every channel count with
`max(1, round(c * w))`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from smh_jax.models.layers import (
    Dtype,
    ModuleDef,
    global_avg_pool,
    kaiming_normal_fan_out,
    scale_channels,
    torch_linear_init,
)


class BasicBlock(nn.Module):
    """Two 3x3 convs; projection shortcut when stride or width changes."""

    features: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.conv(self.features, (3, 3), padding=1, name='conv2')(y)
        y = self.norm(name='bn2')(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = self.conv(
                self.features, (1, 1), self.strides, padding=0, name='downsample_conv'
            )(x)
            shortcut = self.norm(name='downsample_bn')(shortcut)
        return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand by 4; projection shortcut if needed."""

    features: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_features = self.features * self.expansion
        y = self.conv(self.features, (1, 1), padding=0, name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv2')(y)
        y = nn.relu(self.norm(name='bn2')(y))
        y = self.conv(out_features, (1, 1), padding=0, name='conv3')(y)
        y = self.norm(name='bn3')(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out_features:
            shortcut = self.conv(
                out_features, (1, 1), self.strides, padding=0, name='downsample_conv'
            )(x)
            shortcut = self.norm(name='downsample_bn')(shortcut)
        return nn.relu(y + shortcut)


def _conv_and_norm(dtype: Dtype, train: bool) -> tuple[ModuleDef, ModuleDef]:
    """torchvision ResNet conv (no bias, kaiming fan_out) and BN (torch momentum 0.1)."""
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
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=jnp.float32,
    )
    return conv, norm


def _classifier(x: jax.Array, num_classes: int, dtype: Dtype) -> jax.Array:
    """Final linear layer with PyTorch's default nn.Linear init; float32 logits."""
    kernel_init, bias_init = torch_linear_init(x.shape[-1])
    x = nn.Dense(
        num_classes,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init,
        name='fc',
    )(x)
    return x.astype(jnp.float32)


class ResNet(nn.Module):
    """ImageNet ResNet (torchvision layout). Input NHWC with any number of channels."""

    stage_sizes: Sequence[int]
    block_cls: ModuleDef
    num_classes: int = 1000
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm = _conv_and_norm(self.dtype, train)
        x = jnp.asarray(x, self.dtype)
        x = conv(scale_channels(64, self.width_multiplier), (7, 7), 2, padding=3, name='conv1')(x)
        x = nn.relu(norm(name='bn1')(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, num_blocks in enumerate(self.stage_sizes):
            features = scale_channels(64 * 2**i, self.width_multiplier)
            for j in range(num_blocks):
                x = self.block_cls(
                    features=features,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    name=f'layer{i + 1}_block{j}',
                )(x)
        return _classifier(global_avg_pool(x), self.num_classes, self.dtype)


class CifarBasicBlock(nn.Module):
    """He et al. basic block with the parameter-free option-A shortcut."""

    features: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.conv(self.features, (3, 3), padding=1, name='conv2')(y)
        y = self.norm(name='bn2')(y)
        shortcut = x[:, :: self.strides, :: self.strides, :] if self.strides != 1 else x
        extra = self.features - x.shape[-1]
        if extra < 0:
            raise ValueError(f'option-A shortcut cannot shrink {x.shape[-1]} -> {self.features}')
        if extra:
            # Zero channels split evenly on both sides, as in the common reference code.
            pad = ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2))
            shortcut = jnp.pad(shortcut, pad)
        return nn.relu(y + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, Sec. 4.2)."""

    depth: int
    num_classes: int = 10
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f'CIFAR ResNet depth must be 6n+2 with n >= 1, got {self.depth}')
        blocks_per_stage = (self.depth - 2) // 6
        conv, norm = _conv_and_norm(self.dtype, train)
        x = jnp.asarray(x, self.dtype)
        x = conv(scale_channels(16, self.width_multiplier), (3, 3), padding=1, name='conv1')(x)
        x = nn.relu(norm(name='bn1')(x))
        for i in range(3):
            features = scale_channels(16 * 2**i, self.width_multiplier)
            for j in range(blocks_per_stage):
                x = CifarBasicBlock(
                    features=features,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    name=f'layer{i + 1}_block{j}',
                )(x)
        return _classifier(global_avg_pool(x), self.num_classes, self.dtype)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck)

ResNet8 = functools.partial(CifarResNet, depth=8)  # n = 1: the smallest member
ResNet20 = functools.partial(CifarResNet, depth=20)
ResNet32 = functools.partial(CifarResNet, depth=32)
ResNet44 = functools.partial(CifarResNet, depth=44)
ResNet56 = functools.partial(CifarResNet, depth=56)
ResNet110 = functools.partial(CifarResNet, depth=110)
