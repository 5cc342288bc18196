"""Fully connected MNIST networks: HashedNets' MLPs and LeNet-300-100.

HashedNets (Chen et al., ICML 2015) use ReLU MLPs of 1000-unit hidden layers, "3-layer"
784-1000-10 (795,010 parameters) and "5-layer" 784-1000-1000-1000-10 (2,797,010), with
dropout on the input and after each hidden layer and Torch7's default Linear init,
uniform(+-1/sqrt(fan_in)) for weights and biases. LeNet-300-100 (784-300-100-10,
266,610 parameters) is the same family without dropout (the Caffe reference model).
`width_multiplier` scales every hidden layer by one common rate (nearest integer
widths): the equal-size "NN" baseline of HashedNets.

`ranks` makes every layer low rank, W = U V with U: fan_in x rank (HashedNets' "LRD"
baseline): U starts Gaussian with std 1/sqrt(fan_in) and is either learned or, with
`learned_projection=False` as published, fixed (kept in the 'constants' collection, so
it is neither trained nor counted as stored); V and the bias are a Dense layer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from smh_jax.models.layers import Dtype, scale_channels, torch_linear_init


class MLP(nn.Module):
    """Flatten, then ReLU hidden layers, then logits (float32)."""

    hidden_sizes: Sequence[int] = (1000,)
    num_classes: int = 10
    width_multiplier: float = 1.0
    dropout_rate: float = 0.0  # after each hidden layer
    input_dropout_rate: float = 0.0
    ranks: Sequence[int] = ()  # per layer, output layer included (0: that layer dense)
    learned_projection: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
        x = nn.Dropout(self.input_dropout_rate)(x, deterministic=not train)
        widths = [scale_channels(h, self.width_multiplier) for h in self.hidden_sizes]
        if self.ranks and len(self.ranks) != len(widths) + 1:
            raise ValueError(f'ranks {tuple(self.ranks)} must give one rank per layer '
                             f'({len(widths) + 1})')
        for i, width in enumerate([*widths, self.num_classes]):
            if self.ranks and self.ranks[i] > 0:
                x = self._projection(x, int(self.ranks[i]), f'fc{i + 1}_u')
            kernel_init, bias_init = torch_linear_init(x.shape[-1])
            x = nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                         kernel_init=kernel_init, bias_init=bias_init, name=f'fc{i + 1}')(x)
            if i < len(widths):
                x = nn.Dropout(self.dropout_rate)(nn.relu(x), deterministic=not train)
        return x.astype(jnp.float32)

    def _projection(self, x: jax.Array, rank: int, name: str) -> jax.Array:
        init = nn.initializers.normal(1.0 / math.sqrt(x.shape[-1]))
        if self.learned_projection:
            return nn.Dense(rank, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                            kernel_init=init, name=name)(x)
        u = self.variable('constants', name, lambda: init(self.make_rng('params'),
                                                          (x.shape[-1], rank)))
        return x @ u.value.astype(self.dtype)


MLP3 = functools.partial(MLP, hidden_sizes=(1000,), dropout_rate=0.25, input_dropout_rate=0.25)
MLP5 = functools.partial(MLP, hidden_sizes=(1000, 1000, 1000), dropout_rate=0.25,
                         input_dropout_rate=0.25)
LeNet300100 = functools.partial(MLP, hidden_sizes=(300, 100))
