"""NNX twins of the MNIST MLPs of mlp.py: HashedNets' MLPs and LeNet-300-100.

Same layers (`fc1`, `fc2`, ...), initializers and parameter counts as the linen models,
created in the same order, so both wrappers give them the same layout and their
variables are interchangeable. The twin takes the input shape (any H, W, C: the input is
flattened); dropout follows `model.train()` / `model.eval()` and draws from the
'dropout' stream of the Rngs it was built with (`nnx.reseed(model, dropout=key)`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from smh_jax.models.layers import Dtype, scale_channels, torch_linear_init


class MLP(nnx.Module):
    """Flatten, then ReLU hidden layers (dropout after each), then float32 logits."""

    def __init__(self, hidden_sizes: Sequence[int] = (1000,), *, input_shape: Sequence[int],
                 num_classes: int = 10, width_multiplier: float = 1.0,
                 dropout_rate: float = 0.0, input_dropout_rate: float = 0.0,
                 dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        self.input_dropout = nnx.Dropout(input_dropout_rate, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        widths = [scale_channels(h, width_multiplier) for h in hidden_sizes]
        fan_in = math.prod(input_shape)
        for i, width in enumerate([*widths, num_classes]):
            kernel_init, bias_init = torch_linear_init(fan_in)
            setattr(self, f'fc{i + 1}', nnx.Linear(
                fan_in, width, dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init,
                bias_init=bias_init, rngs=rngs))
            fan_in = width
        self.num_layers = len(widths) + 1
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.input_dropout(jnp.asarray(x, self.dtype).reshape(x.shape[0], -1))
        for i in range(self.num_layers):
            x = getattr(self, f'fc{i + 1}')(x)
            if i + 1 < self.num_layers:
                x = self.dropout(nnx.relu(x))
        return x.astype(jnp.float32)


MLP3 = functools.partial(MLP, hidden_sizes=(1000,), dropout_rate=0.25, input_dropout_rate=0.25)
MLP5 = functools.partial(MLP, hidden_sizes=(1000, 1000, 1000), dropout_rate=0.25,
                         input_dropout_rate=0.25)
LeNet300100 = functools.partial(MLP, hidden_sizes=(300, 100))
