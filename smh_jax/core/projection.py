"""Warm start: project a trained dense model onto the SMH factors (truncated SVD).

The product pool's virtual matrix A @ B has rank at most M, so the best starting point
for fine-tuning a compressed copy of a trained dense model is the best rank-M
approximation of the dense model's tiled weight matrix (Eckart-Young):

1. Each hashed tensor W_l is divided by its own scale r_l = RMS(W_l) = ||W_l||_F / sqrt(size)
   (so a layer with large weights does not dominate the fit; every layer's values enter
   with unit RMS), and the normalized tensors are tiled row-major, in the layout's order,
   into the n x n matrix X (zero tail past N).
2. Truncated SVD X = U S V^T; A = U_M sqrt(S_M), B = sqrt(S_M) V_M^T, so A @ B = X_M, the
   best rank-M approximation of X in Frobenius norm.
3. Each layer's learnable multiplier is set to the least-squares scale of its slice P_l of
   X_M: s_l = <W_l, P_l> / ||P_l||^2. At s_l = r_l the objective sum_l ||W_l - s_l P_l||^2 /
   r_l^2 is exactly what the SVD minimized; the per-layer refit can only lower it (it is
   separable per layer), and it lowers every layer's own error too. With the default
   `scale_parameterization='norm'` the stored variable is s_l sqrt(size_l), i.e. about
   ||W_l||_F.

If the layout has no learnable multiplier (`learn_scale=False`), the fixed multipliers c_l
(the init stds, fan-out scales) replace r_l in step 1 and there is no refit: the weights
are then c_l P_l, and X_M minimizes sum_l ||W_l - c_l P_l||^2 / c_l^2 over rank-M matrices.

Only the product pool is projected (the others are not low-rank factorizations); the
nonlinear modifiers (`relu`, `sign`) are refused. Unhashed parameters (BatchNorm) and the
other collections (batch_stats) are copied from the dense model.

Pure functions of a Layout and numpy arrays; `smh_jax.formats.warm_start` adds the
loading of a dense train.py workdir or an `eval.py --export_dense` directory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from smh_jax.core import modifiers as modifiers_lib
from smh_jax.core import tree_paths
from smh_jax.core.layout import Layout
from smh_jax.core.params import SMHParams
from smh_jax.core.pools import ProductPool
from smh_jax.errors import UserError

_LINEAR_MODIFIERS = ("scale", "fan_out_scale", "learned_fan_out_scale", "learned_scalar")


# ----------------------------------------------------------------------------- checks


def check_projectable(layout: Layout) -> None:
    """UserError unless the layout is a product pool with only multiplicative modifiers."""
    if not isinstance(layout.pool, ProductPool):
        raise UserError(
            f"smh.pool: {layout.pool.kind!r} cannot be initialized from a dense model; the "
            "warm start projects onto the product pool (A @ B) only; use pool='product'")
    if layout.pool.virtual_size < layout.num_hashed:
        raise UserError(
            f"smh.side: the {layout.pool.side} x {layout.pool.side} virtual matrix does not "
            f"cover the {layout.num_hashed} hashed weights ('{layout.index_store}' index "
            "store); the warm start needs side >= ceil(sqrt(N))")
    for name in layout.modifiers:
        if name not in _LINEAR_MODIFIERS:
            raise UserError(
                f"smh.modifiers: {name!r} is not linear, so a dense model cannot be projected "
                f"onto it; the warm start allows {', '.join(_LINEAR_MODIFIERS)}")


def flat_by_path(tree: Mapping[str, Any]) -> dict[str, Any]:
    """{'Conv_0/kernel': leaf, ...} in creation order."""
    return {tree_paths.path_str(p): leaf for p, leaf in tree_paths.ordered_items(tree)}


def check_dense_params(layout: Layout, dense_params: Mapping[str, Any]
                       ) -> dict[tuple[str, ...], np.ndarray]:
    """Every parameter of the layout, by key, as numpy; UserError naming the bad path."""
    flat = {key: meta.unbox(leaf) for key, leaf in tree_paths.ordered_items(dense_params)}
    expected = {t.key: t.shape for t in layout.hashed}
    out = {}
    for key, _ in layout.param_order:
        name = tree_paths.path_str(key)
        if key not in flat:
            raise UserError(f"dense params: {name!r} is missing; the compressed model needs "
                            f"every parameter of the architecture it wraps")
        value = np.asarray(flat[key])
        if key in expected and tuple(value.shape) != expected[key]:
            raise UserError(f"dense params: {name!r} has shape {tuple(value.shape)}; the "
                            f"compressed model's layout has {expected[key]}")
        out[key] = value
    extra = [k for k in flat if k not in out]
    if extra:
        raise UserError(f"dense params: {tree_paths.path_str(extra[0])!r} is not a parameter "
                        f"of the compressed model ({len(extra)} unexpected); is this the same "
                        "architecture?")
    return out


def _centered(layout: Layout, dense: Mapping[tuple[str, ...], np.ndarray]
              ) -> dict[tuple[str, ...], np.ndarray]:
    """Each hashed tensor minus its static offset (init mean), flat, float64.

    The materialized weights are init_mean + multiplier x slice, so the slices fit these.
    """
    return {t.key: np.asarray(dense[t.key], np.float64).reshape(-1) - t.init_mean
            for t in layout.hashed}


# ----------------------------------------------------------------------------- maths


def _fixed_multipliers(layout: Layout) -> np.ndarray:
    """Product of every multiplier the projection does not set, at its initial value."""
    learned = modifiers_lib.learnable(layout)
    chosen = _chosen_modifier(layout)
    out = np.ones(len(layout.hashed), np.float64)
    for i, tensor in enumerate(layout.hashed):
        for name in layout.modifiers:
            if name == chosen:
                continue
            if name in learned or name in ("scale", "fan_out_scale"):
                out[i] *= modifiers_lib._initial_value(name, tensor, layout)
    return out


def _chosen_modifier(layout: Layout) -> Optional[str]:
    """The learnable multiplier the projection sets: 'scale' if learnable, else the first."""
    learned = modifiers_lib.learnable(layout)
    if "scale" in learned:
        return "scale"
    return learned[0] if learned else None


def layer_scales(layout: Layout, centered: Mapping[tuple[str, ...], np.ndarray]) -> np.ndarray:
    """r_l, what each hashed tensor is divided by before tiling (see the module doc).

    The RMS of the (offset-centered) dense tensor when the layout has a learnable
    multiplier; otherwise the fixed multiplier the model applies to the slice. 0 for an
    all-zero tensor.
    """
    if _chosen_modifier(layout) is None:
        return _fixed_multipliers(layout)
    return np.array([math.sqrt(float(np.mean(np.square(centered[t.key]))))
                     for t in layout.hashed])


def tiled_matrix(layout: Layout, centered: Mapping[tuple[str, ...], np.ndarray],
                 scales: np.ndarray) -> np.ndarray:
    """The n x n float64 matrix of W_l / r_l, row-major in layout order, zero tail."""
    side = layout.pool.side
    flat = np.zeros(side * side, np.float64)
    for tensor, r in zip(layout.hashed, scales, strict=True):
        if r > 0:
            flat[tensor.offset:tensor.offset + tensor.size] = centered[tensor.key] / r
    return flat.reshape(side, side)


def rank_factors(matrix: np.ndarray, rank: int,
                 on_device: Optional[bool] = None) -> tuple[np.ndarray, np.ndarray]:
    """A = U_M sqrt(S_M), B = sqrt(S_M) V_M^T: A @ B is the best rank-M approximation.

    The SVD runs in float64 numpy on the host, or, with `on_device` (default: when JAX's
    default backend is an accelerator), in float32 `jnp.linalg.svd` on the device, which is
    much faster for large n (a host SVD is O(n^3) in float64 on a few cores). A rank above the
    matrix's side is padded with zero columns / rows (they contribute nothing and, both
    being zero, stay at zero under gradient descent).
    """
    if on_device is None:
        on_device = jax.default_backend() != "cpu"
    if on_device:
        u, s, vt = (np.asarray(t, np.float64) for t in jax.device_get(
            jnp.linalg.svd(jnp.asarray(matrix, jnp.float32), full_matrices=False)))
    else:
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    keep = min(rank, s.shape[0])
    root = np.sqrt(s[:keep])
    a = np.zeros((matrix.shape[0], rank), np.float64)
    b = np.zeros((rank, matrix.shape[1]), np.float64)
    a[:, :keep] = u[:, :keep] * root
    b[:keep] = root[:, None] * vt[:keep]
    return a, b


def project(layout: Layout, dense_params: Mapping[str, Any]) -> SMHParams:
    """SMH params whose materialization best approximates `dense_params` (module doc)."""
    check_projectable(layout)
    dense = check_dense_params(layout, dense_params)
    centered = _centered(layout, dense)
    scales = layer_scales(layout, centered)
    a, b = rank_factors(tiled_matrix(layout, centered, scales), layout.pool.rank)
    virtual = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float64).reshape(-1)
    chosen = _chosen_modifier(layout)
    stored = modifiers_lib.init_params(layout)  # initial values of every learnable one
    if chosen is not None:
        fixed = _fixed_multipliers(layout)
        values = np.zeros(len(layout.hashed), np.float64)
        for i, tensor in enumerate(layout.hashed):
            piece = virtual[tensor.offset:tensor.offset + tensor.size]
            norm2 = float(piece @ piece)
            weights = centered[tensor.key]
            best = float(piece @ weights) / norm2 if norm2 > 0 else scales[i]
            values[i] = best / fixed[i] if fixed[i] != 0 else 0.0
        divisors = modifiers_lib.parameterization_divisors(layout).astype(np.float64)
        stored = {**stored, chosen: (values * divisors).astype(np.float32)}
    unhashed = [(key, dense[key]) for key, is_hashed in layout.param_order if not is_hashed]
    return SMHParams(
        pool={"a": a.astype(np.float32), "b": b.astype(np.float32)},
        modifiers={k: np.asarray(v, np.float32) for k, v in stored.items()},
        unhashed=tree_paths.nest(unhashed), layout=layout)


def relative_errors(params: SMHParams, dense_params: Mapping[str, Any]) -> dict[str, Any]:
    """||W - W_hat|| / ||W|| overall and per hashed tensor (what the projection lost)."""
    from smh_jax.core.materialize import hashed_tensors  # jax path, kept out of the maths

    dense = check_dense_params(params.layout, dense_params)
    approx = {k: np.asarray(v, np.float64) for k, v in
              hashed_tensors(jax.tree.map(np.asarray, params), "float32").items()}
    per, total_err, total_norm = {}, 0.0, 0.0
    for t in params.layout.hashed:
        w = dense[t.key].astype(np.float64)
        err, norm = float(np.sum((w - approx[t.key]) ** 2)), float(np.sum(w ** 2))
        per[t.path] = math.sqrt(err / norm) if norm > 0 else math.sqrt(err)
        total_err, total_norm = total_err + err, total_norm + norm
    return {"overall": math.sqrt(total_err / total_norm) if total_norm else 0.0,
            "per_tensor": per}
