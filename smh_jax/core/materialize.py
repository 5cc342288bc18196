"""From SMH parameters to the dense parameter tree of the original model.

One pool evaluation (for the product pool: a single A @ B), then one static split and
reshapes in the layout's tiling, then the per-slice modifiers. No gathers, no per-weight
index tables, nothing that depends on values at trace time: XLA sees one dot followed by
cheap elementwise work, and the backward pass is the dot's transpose.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from smh_jax.core import modifiers, tree_paths
from smh_jax.core.layout import Layout
from smh_jax.core.params import SMHParams


def index_store(virtual: jax.Array, layout: Layout) -> jax.Array:
    """Maps weight index i to a virtual weight: basic/cyclic/padding (reference semantics).

    basic:   i (the layout guarantees the pool covers every weight);
    cyclic:  i mod V, the pool's virtual weights reused in order;
    padding: i < V ? v[i] : pad_value (constant, untrained).
    """
    needed, available = layout.num_hashed, virtual.shape[0]
    if available >= needed:
        return virtual
    if layout.index_store == "cyclic":
        return jnp.tile(virtual, -(-needed // available))[:needed]
    if layout.index_store == "padding":
        pad = jnp.full((needed - available,), layout.pad_value, virtual.dtype)
        return jnp.concatenate([virtual, pad])
    raise ValueError(f"pool of {available} virtual weights cannot cover {needed} with a "
                     f"'{layout.index_store}' index store")


def virtual_weights(params: SMHParams, dtype: Optional[Any] = None) -> jax.Array:
    """The N hashed weights' unit-scale values (before modifiers), in tiling order."""
    layout = params.layout
    dtype = jnp.dtype(dtype or layout.dtype)
    return index_store(layout.pool.virtual(params.pool, dtype), layout)


def split_virtual(virtual: jax.Array, layout: Layout) -> list[jax.Array]:
    """Each hashed tensor's flat slice of `virtual`, cut with one `lax.split`.

    The tensors tile [0, N) contiguously, so one split cuts them all; its transpose (the
    backward pass) is one concatenate. Separate slices would transpose to one zero-padded
    copy of the whole vector per tensor, summed: L passes over N values instead of one.
    """
    sizes = [t.size for t in layout.hashed]
    if [t.offset for t in layout.hashed] != [sum(sizes[:i]) for i in range(len(sizes))]:
        return [virtual[t.offset:t.offset + t.size] for t in layout.hashed]
    rest = virtual.shape[0] - sum(sizes)
    return jax.lax.split(virtual, sizes + [rest] if rest else sizes)[:len(sizes)]


def hashed_tensors(params: SMHParams, dtype: Optional[Any] = None) -> dict[str, jax.Array]:
    """Each hashed tensor (modifiers applied), keyed by its '/'-joined path."""
    layout = params.layout
    pieces = split_virtual(virtual_weights(params, dtype), layout)
    # One scalar per tensor, also by split (its transpose is one concatenate, not L pads).
    count = len(layout.hashed)
    learned = {name: [s.reshape(()) for s in jax.lax.split(vector, [1] * count)]
               for name, vector in modifiers.multipliers(layout, params.modifiers).items()}
    return {t.path: modifiers.apply(layout, i, pieces[i].reshape(t.shape), learned)
            for i, t in enumerate(layout.hashed)}


def merge(layout: Layout, hashed: dict[str, jax.Array], unhashed: Any) -> dict[str, Any]:
    """The original model's parameter tree, in creation order, from both kinds of tensors."""
    flat_unhashed = {tree_paths.path_str(p): v for p, v in tree_paths.ordered_items(unhashed)}
    return tree_paths.nest([
        (tuple(path.split("/")), hashed[path] if is_hashed else flat_unhashed[path])
        for path, is_hashed in layout.param_order])


def materialize(params: SMHParams, dtype: Optional[Any] = None) -> dict[str, Any]:
    """Dense params that the wrapped model's `apply` accepts (hashed tensors in `dtype`)."""
    return merge(params.layout, hashed_tensors(params, dtype), params.unhashed)
