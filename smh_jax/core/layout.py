"""The layout: which tensors are hashed, where each one sits in the virtual matrix.

A `Layout` is static (hashable, compared by value): it travels as pytree metadata of the
SMH parameters, so `materialize` needs nothing but the parameters, and jit caches on it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

from smh_jax.core import tree_paths
from smh_jax.core.options import SMHOptions
from smh_jax.core.pools import Pool, make_pool
from smh_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class HashedTensor:
    """One hashed weight tensor: its slice [offset, offset + size) of the virtual weights.

    `init_std` is the std the layer's own initializer gives (measured on a sample of the
    wrapped model's init), `init_kurtosis` its excess kurtosis (about -1.2 uniform, -0.6
    truncated normal, 0 normal): the paper matches both scale and range of the original.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    init_std: float
    init_kurtosis: float

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def fan_out(self) -> int:
        """Fan-out as Flax's variance_scaling computes it: receptive field x output units."""
        if len(self.shape) < 2:
            return self.size
        return math.prod(self.shape[:-2]) * self.shape[-1]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Everything static about a compressed model's parameterization."""

    hashed: tuple[HashedTensor, ...]
    # Every parameter path of the original model, in creation order, and whether hashed.
    param_order: tuple[tuple[str, bool], ...]
    pool: Pool
    index_store: str
    pad_value: float
    modifiers: tuple[str, ...]
    learn_scale: bool
    scale_parameterization: str
    fan_out_gain: float
    bounded_init: bool
    dtype: str
    requested: tuple[str, float]  # ('fraction', f) or ('target_params', T)

    @property
    def num_hashed(self) -> int:
        """N: the total number of hashed weights."""
        return sum(t.size for t in self.hashed)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be restored into this layout (no init statistics)."""
        return {
            "hashed": [[t.path, list(t.shape), t.offset] for t in self.hashed],
            "unhashed": [p for p, hashed in self.param_order if not hashed],
            "pool": self.pool.describe(),
            "index_store": self.index_store,
            "modifiers": list(self.modifiers),
            "learn_scale": self.learn_scale,
            "scale_parameterization": self.scale_parameterization,
        }


def _matches(patterns: tuple[str, ...], path: str) -> bool:
    return any(re.search(p, path) for p in patterns)


def select_hashed(params: Mapping[str, Any], options: SMHOptions,
                  normalization_paths: frozenset[str] = frozenset()) -> list[tuple[str, Any]]:
    """The (path, leaf) pairs to hash, in creation order.

    Default: every floating-point parameter except those of normalization layers (their
    scale/offset fold into the next op at inference; the paper leaves them unhashed).
    `normalization_paths` are the module paths of normalization layers ('block1/bn').
    """
    items = [(tree_paths.path_str(p), leaf) for p, leaf in tree_paths.ordered_items(params)]
    selected = []
    for path, leaf in items:
        module = path.rsplit("/", 1)[0] if "/" in path else ""
        if not options.hash_normalization and module in normalization_paths:
            continue
        if options.include:
            if not _matches(options.include, path):
                continue
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise UserError(
                    f"smh.include selects {path!r} of dtype {leaf.dtype}; only floating-point "
                    f"parameters can be hashed")
        elif not jnp.issubdtype(leaf.dtype, jnp.floating):
            continue
        if options.exclude and _matches(options.exclude, path):
            continue
        selected.append((path, leaf))
    if not selected:
        shown = ", ".join(p for p, _ in items[:12]) + (", ..." if len(items) > 12 else "")
        raise UserError(
            f"smh: include={list(options.include) or 'all floating'} exclude="
            f"{list(options.exclude)} select no parameter to hash; the parameters are: {shown}")
    return selected


def _excess_kurtosis(values: np.ndarray) -> float:
    centered = values - values.mean()
    var = float(np.mean(centered ** 2))
    if var == 0.0 or values.size < 4:
        return 0.0
    return float(np.mean(centered ** 4) / var ** 2 - 3.0)


def _round(x: float, digits: int = 6) -> float:
    """Platform-stable statistics: init on CPU and GPU may differ in the last bits."""
    return float(f"{x:.{digits}g}")


def build_layout(params: Mapping[str, Any], options: SMHOptions,
                 normalization_paths: frozenset[str] = frozenset(),
                 sample: Optional[Mapping[str, Any]] = None) -> Layout:
    """Chooses the hashed tensors, sizes the pool and places each tensor in the tiling.

    `params` gives shapes and order (abstract arrays are fine); `sample` is a concrete
    draw of the model's own initialization from which each layer's init std and range are
    measured (defaults to `params`, which must then be concrete).
    """
    selected = select_hashed(params, options, normalization_paths)
    hashed_paths = {p for p, _ in selected}
    sample_leaves = {}
    if sample is not None:
        sample_leaves = {tree_paths.path_str(p): v for p, v in tree_paths.ordered_items(sample)}
    tensors, offset = [], 0
    for path, leaf in selected:
        values = np.asarray(sample_leaves.get(path, leaf), dtype=np.float64).reshape(-1)
        tensors.append(HashedTensor(
            path=path, shape=tuple(int(d) for d in leaf.shape), dtype=str(leaf.dtype),
            offset=offset, init_std=_round(float(values.std())),
            init_kurtosis=_round(_excess_kurtosis(values), 3)))
        offset += tensors[-1].size
    num_hashed = offset
    all_items = list(tree_paths.ordered_items(params))
    num_unhashed = sum(int(np.prod(leaf.shape)) for p, leaf in all_items
                       if tree_paths.path_str(p) not in hashed_paths)
    num_modifier_vars = len(tensors) * len(options.learnable_modifiers)
    if options.fraction is not None:
        requested = ("fraction", options.fraction)
        target = options.fraction * num_hashed
    else:
        requested = ("target_params", float(options.target_params))
        target = options.target_params - num_unhashed - num_modifier_vars
        if target <= 0:
            raise UserError(
                f"smh.target_params: {options.target_params} is not above the "
                f"{num_unhashed + num_modifier_vars} unhashed parameters and scales this model "
                f"keeps anyway")
    pool = make_pool(options.pool, num_hashed, target, options)
    if options.index_store == "basic" and pool.virtual_size < num_hashed:
        raise UserError(
            f"smh.index_store: 'basic' needs the pool's {pool.virtual_size} virtual weights to "
            f"cover all {num_hashed} hashed weights; use 'cyclic' or 'padding', or a larger pool")
    if options.init_range == "auto":
        # Size-weighted vote over the hashed tensors: bounded inits have negative kurtosis.
        weights = [(t.size, t.init_kurtosis) for t in tensors if t.init_std > 0]
        total = sum(w for w, _ in weights)
        bounded = total > 0 and sum(w * k for w, k in weights) / total < -0.3
    else:
        bounded = options.init_range == "uniform"
    return Layout(
        hashed=tuple(tensors),
        param_order=tuple((tree_paths.path_str(p), tree_paths.path_str(p) in hashed_paths)
                          for p, _ in all_items),
        pool=pool, index_store=options.index_store, pad_value=float(options.pad_value),
        modifiers=options.modifiers, learn_scale=options.learn_scale,
        scale_parameterization=options.scale_parameterization,
        fan_out_gain=float(options.fan_out_gain), bounded_init=bool(bounded),
        dtype=options.dtype, requested=requested)

