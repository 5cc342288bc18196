"""Parameter accounting: what was hashed, how big the pool is, what fraction was reached."""

from __future__ import annotations

import math
from typing import Any

import jax

from smh_jax.core.params import SMHParams


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays or shapes (boxed parameters included)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def accounting(params: SMHParams) -> dict[str, Any]:
    """Exact counts for a compressed model (works on abstract shapes too).

    fraction is trainable / dense_params: the size reached against the original model's
    parameter count (unhashed parameters and scales included); factor_fraction is the
    pool's size against N, the quantity the requested `fraction` targets.
    """
    layout = params.layout
    pool = layout.pool.describe()
    factors = count_params(params.pool)
    scales = count_params(params.modifiers)
    unhashed = count_params(params.unhashed)
    num_hashed = layout.num_hashed
    trainable = factors + scales + unhashed
    dense = num_hashed + unhashed
    return {
        "hashed_weights": num_hashed,
        "n": pool.get("n"),
        "M": pool.get("M"),
        "pool": pool,
        "trainable": trainable,
        "dense_params": dense,
        "fraction": trainable / dense,
        "factors": factors,
        "scales": scales,
        "unhashed": unhashed,
        "factor_fraction": factors / num_hashed,
        "requested": {layout.requested[0]: layout.requested[1]},
        "init_range": "uniform" if layout.bounded_init else "normal",
        "tensors": [
            {"path": t.path, "shape": list(t.shape), "offset": t.offset, "size": t.size,
             "init_mean": t.init_mean, "init_std": t.init_std}
            for t in layout.hashed
        ],
    }


def format_accounting(info: dict[str, Any], max_rows: int = 40) -> str:
    """A readable table of `accounting(...)`'s dict."""
    lines = [
        f"SMH {info['pool']['pool']} pool: {info['pool']}",
        f"  hashed weights N      {info['hashed_weights']:>14,}",
        f"  pool variables        {info['factors']:>14,}  ({info['factor_fraction']:.4f} of N)",
        f"  learnable scales      {info['scales']:>14,}",
        f"  unhashed parameters   {info['unhashed']:>14,}",
        f"  trainable total       {info['trainable']:>14,}",
        f"  dense model params    {info['dense_params']:>14,}",
        f"  achieved fraction     {info['fraction']:>14.4f}  (requested {info['requested']})",
        f"  hashed tensors ({len(info['tensors'])}):",
        f"    {'offset':>12}  {'size':>10}  {'init mean':>9}  {'init std':>9}  "
        f"{'shape':<18} path",
    ]
    rows = info["tensors"]
    shown = rows if len(rows) <= max_rows else rows[:max_rows // 2] + [None] + rows[-max_rows // 2:]
    for t in shown:
        if t is None:
            lines.append(f"    ... {len(rows) - 2 * (max_rows // 2)} more ...")
            continue
        lines.append(f"    {t['offset']:>12,}  {t['size']:>10,}  {t['init_mean']:>9.4g}  "
                     f"{t['init_std']:>9.4g}  {str(tuple(t['shape'])):<18} {t['path']}")
    return "\n".join(lines)
