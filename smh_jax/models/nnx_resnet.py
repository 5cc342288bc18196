"""NNX twins of the CIFAR ResNets of resnet.py (He et al. 2016, Sec. 4.2).

Same layers, names, initializers and parameter counts as the linen models, created in
the same order, so `smh_jax.nnx.compress` lays a twin out exactly as `smh_jax.compress`
lays out its linen model and their variables are interchangeable. NNX creates
parameters at construction, so a twin takes the input shape (H, W, C); BatchNorm
follows `model.train()` / `model.eval()` instead of a `train` argument.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from smh_jax.models.layers import (
    Dtype,
    global_avg_pool,
    kaiming_normal_fan_out,
    scale_channels,
    torch_linear_init,
)


def _conv(in_features: int, features: int, kernel: int, strides: int, dtype: Dtype,
          rngs: nnx.Rngs) -> nnx.Conv:
    """torchvision's ResNet conv: no bias, kaiming fan_out, symmetric k//2 padding."""
    return nnx.Conv(in_features, features, (kernel, kernel), strides, padding=kernel // 2,
                    use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=kaiming_normal_fan_out(), rngs=rngs)


def _norm(features: int, dtype: Dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with torch's momentum 0.1 (0.9 in flax's convention)."""
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype,
                         param_dtype=jnp.float32, rngs=rngs)


class CifarBasicBlock(nnx.Module):
    """He et al. basic block with the parameter-free option-A shortcut."""

    def __init__(self, in_features: int, features: int, strides: int, *, dtype: Dtype,
                 rngs: nnx.Rngs):
        if features < in_features:
            raise ValueError(f'option-A shortcut cannot shrink {in_features} -> {features}')
        self.conv1 = _conv(in_features, features, 3, strides, dtype, rngs)
        self.bn1 = _norm(features, dtype, rngs)
        self.conv2 = _conv(features, features, 3, 1, dtype, rngs)
        self.bn2 = _norm(features, dtype, rngs)
        self.strides = strides
        self.extra = features - in_features

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x[:, :: self.strides, :: self.strides, :] if self.strides != 1 else x
        if self.extra:
            # Zero channels split evenly on both sides, as in the common reference code.
            pad = ((0, 0), (0, 0), (0, 0), (self.extra // 2, self.extra - self.extra // 2))
            shortcut = jnp.pad(shortcut, pad)
        return nnx.relu(y + shortcut)


class CifarResNet(nnx.Module):
    """ResNet-(6n+2) for 32x32 inputs; layers named as in the linen model."""

    def __init__(self, depth: int, *, input_shape: Sequence[int], num_classes: int = 10,
                 width_multiplier: float = 1.0, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f'CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}')
        width = scale_channels(16, width_multiplier)
        self.conv1 = _conv(input_shape[-1], width, 3, 1, dtype, rngs)
        self.bn1 = _norm(width, dtype, rngs)
        names = []
        for i in range(3):
            features = scale_channels(16 * 2**i, width_multiplier)
            for j in range((depth - 2) // 6):
                names.append(f'layer{i + 1}_block{j}')
                setattr(self, names[-1], CifarBasicBlock(
                    width, features, 2 if i > 0 and j == 0 else 1, dtype=dtype, rngs=rngs))
                width = features
        self.block_names = tuple(names)
        kernel_init, bias_init = torch_linear_init(width)
        self.fc = nnx.Linear(width, num_classes, dtype=dtype, param_dtype=jnp.float32,
                             kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.bn1(self.conv1(jnp.asarray(x, self.dtype))))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.fc(global_avg_pool(x)).astype(jnp.float32)


ResNet8 = functools.partial(CifarResNet, depth=8)  # n = 1: the smallest member
ResNet20 = functools.partial(CifarResNet, depth=20)
ResNet32 = functools.partial(CifarResNet, depth=32)
ResNet44 = functools.partial(CifarResNet, depth=44)
ResNet56 = functools.partial(CifarResNet, depth=56)
ResNet110 = functools.partial(CifarResNet, depth=110)
