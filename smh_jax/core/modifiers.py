"""Per-slice modifiers: what turns a unit-std slice of the pool into a layer's weights.

The default, `scale`, is the paper's per-layer learnable scale (Sec. 3.4), initialised to
the std the layer's own initializer gives (Sec. 3.3).

Learnable scalars are stored in one of two parameterizations (`scale_parameterization`):
  direct: the stored variable is the multiplier s itself (the straightforward variant).
  norm:   the stored variable is theta = s * sqrt(size), the Frobenius norm the layer's
          weights have at unit-std virtual values; the forward pass uses s = theta / sqrt(size).
Both compute the same weights. They differ in how SGD moves them: d loss / d s sums over
every weight of the slice, so with `direct` a step moves the scale of a 36,864-weight conv
36,864 times faster than the same step moves that layer's scale in the dense model
(d loss / d s = <G, u>; dense: delta s = -lr <G, u> / size). `norm` divides that back out,
so plain SGD (and weight decay) moves each layer's scale exactly as it would move the
dense layer's norm: the learnable scale then trains stably with the dense recipe's LR.

After the modifiers, each tensor gets its initializer's mean as a static offset:
w = init_mean + modifiers(slice). Zero-mean initializers (every kernel of the zoo) add
nothing, so their weights are the paper's s x slice exactly; a ones-initialized gain
starts at 1 instead of at 0 (`docs/smh.md`, "Initialization").

Frozen scales (`learn_scale=False`): each tensor's fixed multiplier is its init std. A
tensor whose initializer has std 0 (a zero bias, a constant gain) would then be frozen
at its constant for ever, so it gets the model's typical init std instead
(`Layout.reference_std`), capped at `CONSTANT_NOISE` x |mean| for a nonzero constant: it
starts at its constant plus small noise, and learns at the pace of the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from smh_jax.core.layout import HashedTensor, Layout
from smh_jax.core.options import learnable_modifiers

CONSTANT_NOISE = 0.05  # frozen scales: noise on a nonzero constant, relative to |mean|


def frozen_scale(tensor: HashedTensor, layout: Layout) -> float:
    """The fixed multiplier of `scale` when scales are frozen (module doc)."""
    if tensor.init_std > 0:
        return tensor.init_std
    if tensor.init_mean != 0:
        return min(layout.reference_std, CONSTANT_NOISE * abs(tensor.init_mean))
    return layout.reference_std


def _initial_value(modifier: str, tensor: HashedTensor, layout: Layout) -> float:
    if modifier == "scale":
        return tensor.init_std if layout.learn_scale else frozen_scale(tensor, layout)
    if modifier in ("fan_out_scale", "learned_fan_out_scale"):
        return math.sqrt(layout.fan_out_gain / tensor.fan_out)
    if modifier == "learned_scalar":
        return 1.0
    raise ValueError(f"modifier {modifier!r} has no scalar")


def learnable(layout: Layout) -> tuple[str, ...]:
    return learnable_modifiers(layout.modifiers, layout.learn_scale)


def parameterization_divisors(layout: Layout) -> np.ndarray:
    """c_l with stored theta_l = s_l * c_l: sqrt(size_l) for 'norm', 1 for 'direct'."""
    if layout.scale_parameterization == "norm":
        return np.array([math.sqrt(t.size) for t in layout.hashed], np.float32)
    return np.ones(len(layout.hashed), np.float32)


def init_params(layout: Layout) -> dict[str, jax.Array]:
    """Stored values of each learnable modifier: one vector, one entry per hashed tensor."""
    divisors = parameterization_divisors(layout)
    return {m: jnp.asarray(np.array([_initial_value(m, t, layout) for t in layout.hashed],
                                    np.float32) * divisors)
            for m in learnable(layout)}


def multipliers(layout: Layout, params: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The effective per-tensor multiplier s of each learnable modifier (theta / c)."""
    divisors = jnp.asarray(parameterization_divisors(layout))
    return {m: params[m] / divisors for m in params}


def apply(layout: Layout, index: int, values: jax.Array,
          learned: Mapping[str, Union[jax.Array, Sequence[jax.Array]]]) -> jax.Array:
    """Applies the layout's modifiers, in order, to the slice of hashed tensor `index`.

    `learned[m][index]` is tensor `index`'s multiplier of learnable modifier m: a vector
    over tensors (as `multipliers` returns) or a sequence of per-tensor scalars.
    """
    tensor = layout.hashed[index]
    for modifier in layout.modifiers:
        if modifier in learned:
            values = values * learned[modifier][index].astype(values.dtype)
        elif modifier in ("scale", "fan_out_scale"):
            values = values * jnp.asarray(_initial_value(modifier, tensor, layout), values.dtype)
        elif modifier == "relu":
            values = jax.nn.relu(values)
        elif modifier == "sign":
            values = values + jax.lax.stop_gradient(jnp.sign(values) - values)
        else:
            raise ValueError(f"unknown modifier {modifier!r}")
    return values


def to_weights(layout: Layout, index: int, unit_values: jax.Array,
               learned: Mapping[str, Union[jax.Array, Sequence[jax.Array]]],
               dtype: Optional[Any] = None) -> jax.Array:
    """Hashed tensor `index` from its unit-scale slice: modifiers, mean offset, dtype.

    The modifiers and the offset run in the wider of the slice's dtype and the output
    dtype (`dtype`, default the parameter's own), so a bfloat16 product does not round a
    float32 parameter's offset; then the result is cast to the output dtype.
    """
    tensor = layout.hashed[index]
    out_dtype = jnp.dtype(dtype or tensor.dtype)
    work = jnp.promote_types(unit_values.dtype, out_dtype)
    values = apply(layout, index, unit_values.reshape(tensor.shape).astype(work), learned)
    if tensor.init_mean != 0:
        values = values + jnp.asarray(tensor.init_mean, work)
    return values.astype(out_dtype)
