"""LeNet-5 as in Caffe's MNIST example (431,080 parameters).

conv 20 5x5 -> max pool 2 -> conv 50 5x5 -> max pool 2 -> fc 500 -> ReLU -> fc 10, with
'valid' convolutions and no nonlinearity after the convolutions, exactly as Caffe's
lenet_train_test.prototxt; weights use Caffe's "xavier" filler, uniform(+-sqrt(3 /
fan_in)), biases start at 0. `width_multiplier` scales the 20, 50 and 500. `max_pool`
picks the pooling's implementation (layers.max_pool): "tiles" (default) or "window"
(flax's nn.max_pool); the same function, the tiled one cheaper to differentiate on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from smh_jax.models.layers import Dtype, max_pool, scale_channels


def caffe_xavier() -> nn.initializers.Initializer:
    """Caffe's "xavier" filler: uniform(+-sqrt(3 / fan_in))."""
    return nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')


class LeNet5(nn.Module):
    """Caffe's LeNet-5 for 28x28 inputs (any channel count)."""

    num_classes: int = 10
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32
    max_pool: str = "tiles"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train  # no dropout or batch statistics
        width = lambda c: scale_channels(c, self.width_multiplier)  # noqa: E731
        x = jnp.asarray(x, self.dtype)
        for i, channels in enumerate((20, 50)):
            x = nn.Conv(width(channels), (5, 5), padding='VALID', dtype=self.dtype,
                        param_dtype=jnp.float32, kernel_init=caffe_xavier(),
                        name=f'conv{i + 1}')(x)
            x = max_pool(x, 2, self.max_pool)
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(width(500), dtype=self.dtype, param_dtype=jnp.float32,
                     kernel_init=caffe_xavier(), name='fc1')(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                     kernel_init=caffe_xavier(), name='fc2')(nn.relu(x))
        return x.astype(jnp.float32)
