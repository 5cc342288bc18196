"""The SMH parameter pytree and its initialization."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import jax

from smh_jax.core import modifiers, tree_paths
from smh_jax.core.layout import Layout


@flax.struct.dataclass
class SMHParams:
    """Trainable variables of a compressed model, with its static layout as pytree metadata.

    pool:      the pool's variables (product pool: {'a': n x M, 'b': M x n}).
    modifiers: one vector per learnable modifier, one entry per hashed tensor.
    unhashed:  the original model's parameters that are not hashed (nested like the
               original, e.g. BatchNorm scale/bias), trained as ordinary parameters.
    layout:    static; jit, optax and Orbax carry it along with the tree structure.
    """

    pool: dict[str, Any]
    modifiers: dict[str, Any]
    unhashed: dict[str, Any]
    layout: Layout = flax.struct.field(pytree_node=False)


def init_params(rng: jax.Array, layout: Layout, dense_params: Mapping[str, Any]) -> SMHParams:
    """Fresh pool variables (unit-std virtual weights), initial scales, unhashed params.

    Unhashed parameters are taken from `dense_params`, the wrapped model's own init
    (boxed ones stay boxed), in the layout's creation order.
    """
    flat = dict(tree_paths.ordered_items(dense_params))
    unhashed = [(key, flat[key]) for key, is_hashed in layout.param_order if not is_hashed]
    return SMHParams(
        pool=layout.pool.init(rng, 1.0, layout.bounded_init),
        modifiers=modifiers.init_params(layout),
        unhashed=tree_paths.nest(unhashed),
        layout=layout)
