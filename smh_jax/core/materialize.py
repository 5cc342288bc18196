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
from smh_jax.core.layout import HashedTensor, Layout
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


def split_scalars(vector: jax.Array) -> list[jax.Array]:
    """One scalar per tensor, by split: its transpose is one concatenate, not L pads."""
    return [s.reshape(()) for s in jax.lax.split(vector, [1] * vector.shape[0])]


def hashed_tensors(params: SMHParams, dtype: Optional[Any] = None,
                   product_dtype: Optional[Any] = None) -> dict[tuple[str, ...], jax.Array]:
    """Each hashed tensor (modifiers and offset applied), keyed by its path.

    Tensors come out in `dtype`, default each parameter's own dtype; the pool is
    evaluated in `product_dtype`, default `dtype` if given, else the layout's smh dtype.
    """
    layout = params.layout
    # The barrier keeps XLA from fusing the pieces with what produces and consumes them.
    # Without it, XLA:CPU fused a bias gradient's batch reduction into the backward pass's
    # concatenation of every tensor's cotangent, recomputing it for each element of the
    # virtual matrix: with frozen (constant) scales the MNIST MLP's step was 2.5x slower
    # than with learned ones (docs/smh.md, "Frozen scales"). It costs one copy of N values.
    pieces = jax.lax.optimization_barrier(
        split_virtual(virtual_weights(params, product_dtype or dtype), layout))
    learned = {name: split_scalars(vector)
               for name, vector in modifiers.multipliers(layout, params.modifiers).items()}
    return {t.key: modifiers.to_weights(layout, i, pieces[i], learned, dtype)
            for i, t in enumerate(layout.hashed)}


def boxed(tensor: HashedTensor, value: jax.Array) -> Any:
    """`value` in the parameter's own metadata box (e.g. logical partitioning), if any."""
    return value if tensor.box is None else tensor.box.replace_boxed(value)


def merge(layout: Layout, hashed: dict[tuple[str, ...], jax.Array], unhashed: Any
          ) -> dict[str, Any]:
    """The original model's parameter tree, in creation order, from both kinds of tensors."""
    flat_unhashed = dict(tree_paths.ordered_items(unhashed))
    tensors = {t.key: t for t in layout.hashed}
    return tree_paths.nest([
        (key, boxed(tensors[key], hashed[key]) if is_hashed else flat_unhashed[key])
        for key, is_hashed in layout.param_order])


def materialize(params: SMHParams, dtype: Optional[Any] = None) -> dict[str, Any]:
    """Dense params that the wrapped model's `apply` accepts.

    Hashed tensors come out in their own parameter dtypes (the product runs in the
    layout's smh dtype), or all in `dtype` when given (e.g. float32 for an export).
    """
    return merge(params.layout, hashed_tensors(params, dtype), params.unhashed)
