"""NNX twin of Caffe's LeNet-5 (lenet.py): same layers, names, initializers, counts.

Created in the linen model's order, so both wrappers give it the same layout. The twin
takes the input shape (H, W, C): the first dense layer's width depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from smh_jax.models.layers import Dtype, max_pool, scale_channels
from smh_jax.models.lenet import caffe_xavier


def _pooled(side: int) -> int:
    """A side after a 5x5 'valid' conv and a 2x2 max pool of stride 2."""
    return (side - 4) // 2


class LeNet5(nnx.Module):
    """Caffe's LeNet-5 for 28x28 inputs (any channel count)."""

    def __init__(self, *, input_shape: Sequence[int], num_classes: int = 10,
                 width_multiplier: float = 1.0, dtype: Dtype = jnp.float32,
                 max_pool: str = "tiles", rngs: nnx.Rngs):
        height, width, channels = input_shape
        c1, c2, hidden = (scale_channels(c, width_multiplier) for c in (20, 50, 500))
        layer = dict(dtype=dtype, param_dtype=jnp.float32, kernel_init=caffe_xavier(),
                     rngs=rngs)
        self.conv1 = nnx.Conv(channels, c1, (5, 5), padding='VALID', **layer)
        self.conv2 = nnx.Conv(c1, c2, (5, 5), padding='VALID', **layer)
        flat = _pooled(_pooled(height)) * _pooled(_pooled(width)) * c2
        self.fc1 = nnx.Linear(flat, hidden, **layer)
        self.fc2 = nnx.Linear(hidden, num_classes, **layer)
        self.dtype = dtype
        self.max_pool = max_pool

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, self.dtype)
        for conv in (self.conv1, self.conv2):
            x = max_pool(conv(x), 2, self.max_pool)
        x = self.fc1(x.reshape(x.shape[0], -1))
        return self.fc2(nnx.relu(x)).astype(jnp.float32)
