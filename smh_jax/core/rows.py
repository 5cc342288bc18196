"""Per-tensor materialization: one hashed tensor from only the rows of A it needs.

Full materialization computes the whole n x n virtual matrix A @ B (N weights) and then
the dense tree (another N), so inference of a compressed model briefly holds about twice
the dense model. Computing each tensor from its own rows of A, right before its layer
runs (see `smh_jax.linen.per_layer`), holds at most one layer's rows at a time.

The values equal full materialization's: the same products of the same rows, the same
index store, the same modifiers. Product pool only (its rows are independent); the other
pools have no cheap partial evaluation.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any, Optional

import jax
import jax.numpy as jnp

from smh_jax.core import modifiers
from smh_jax.core.layout import Layout
from smh_jax.core.params import SMHParams
from smh_jax.core.pools import ProductPool
from smh_jax.errors import UserError


def check_supported(layout: Layout) -> None:
    """UserError unless the pool can evaluate row ranges (the product pool)."""
    if not isinstance(layout.pool, ProductPool):
        raise UserError(
            f"smh.pool: {layout.pool.kind!r} cannot be materialized per layer; only the "
            "product pool (rows of A @ B) can; use per_layer=False")


def _rows_range(pool: ProductPool, pool_params: dict[str, Any], start: int, stop: int,
                dtype: Any, row_shift: Optional[jax.Array]) -> jax.Array:
    """`pool.virtual_range`, optionally reading A's rows at a traced offset `row_shift`.

    `row_shift` is a traced int that is always 0 but that XLA cannot prove to be 0: it
    makes reading the rows data-dependent on whatever it was computed from (smh_jax.linen.per_layer
    derives it from the layer's input), which orders the computation after that input.
    """
    if row_shift is None:
        return pool.virtual_range(pool_params, start, stop, dtype)
    first, last = start // pool.side, -(-stop // pool.side)
    rows = jax.lax.dynamic_slice_in_dim(pool_params["a"], first + row_shift, last - first, 0)
    shift = first * pool.side
    return pool.virtual_range({**pool_params, "a": rows}, start - shift, stop - shift, dtype)


def virtual_slice(layout: Layout, pool_params: dict[str, Any], start: int, stop: int,
                  dtype: Any, row_shift: Optional[jax.Array] = None) -> jax.Array:
    """Virtual weights [start, stop) after the index store (basic / cyclic / padding)."""
    pool = layout.pool
    size = pool.virtual_size
    rows = functools.partial(_rows_range, pool, pool_params, dtype=dtype, row_shift=row_shift)
    if stop <= size:
        return rows(start, stop)
    if layout.index_store == "padding":
        head = [rows(start, size)] if start < size else []
        pad = jnp.full((stop - max(start, size),), layout.pad_value, dtype)
        return jnp.concatenate(head + [pad]) if head else pad
    if layout.index_store == "cyclic":
        parts, position = [], start
        while position < stop:
            first = position % size
            count = min(size - first, stop - position)
            parts.append(rows(first, first + count))
            position += count
        return jnp.concatenate(parts) if len(parts) > 1 else parts[0]
    raise ValueError(f"pool of {size} virtual weights cannot cover [{start}, {stop}) with a "
                     f"'{layout.index_store}' index store")


def hashed_tensor(params: SMHParams, index: int, dtype: Optional[Any] = None,
                  learned: Optional[dict[str, jax.Array]] = None,
                  row_shift: Optional[jax.Array] = None) -> jax.Array:
    """Hashed tensor `index` of the layout, modifiers applied, from only its rows of A.

    `learned` are `modifiers.multipliers(...)` (computed once for all tensors if given);
    `row_shift` an always-zero traced offset that orders the rows' read (see _rows_range).
    """
    layout = params.layout
    tensor = layout.hashed[index]
    values = virtual_slice(layout, params.pool, tensor.offset, tensor.offset + tensor.size,
                           jnp.dtype(dtype or layout.dtype), row_shift)
    if learned is None:
        learned = modifiers.multipliers(layout, params.modifiers)
    return modifiers.to_weights(layout, index, values, learned, dtype)


def zero_depending_on(x: jax.Array) -> jax.Array:
    """An int32 0 computed from x's first element, which XLA cannot fold to a constant.

    min(|bits >> 1|, 0) is 0 for every bit pattern (the shift keeps |.| from overflowing),
    but constant folding would need range analysis that XLA's simplifier does not do.
    """
    value = x.reshape(-1)[0]
    if jnp.issubdtype(value.dtype, jnp.floating):
        width = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[value.dtype.itemsize]
        value = jax.lax.bitcast_convert_type(value, width)
    elif not jnp.issubdtype(value.dtype, jnp.integer):
        value = value.astype(jnp.int32)
    return jnp.minimum(jnp.abs(value >> 1), 0).astype(jnp.int32)


def module_groups(layout: Layout) -> dict[tuple[str, ...], list[tuple[str, int]]]:
    """Module path (('layer1_block0', 'conv1')) -> [(param name, hashed index), ...]."""
    groups: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for index, tensor in enumerate(layout.hashed):
        groups[tensor.key[:-1]].append((tensor.key[-1], index))
    return dict(groups)
