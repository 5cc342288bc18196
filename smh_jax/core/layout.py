"""The layout: which tensors are hashed, where each one sits in the virtual matrix.

A `Layout` is static (hashable, compared by value): it travels as pytree metadata of the
SMH parameters, so `materialize` needs nothing but the parameters, and jit caches on it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
from flax.core import meta

from smh_jax.core import init_stats, tree_paths
from smh_jax.core.init_stats import InitStats
from smh_jax.core.options import SMHOptions, exact_decimal
from smh_jax.core.pools import Pool, make_pool
from smh_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class HashedTensor:
    """One hashed weight tensor: its slice [offset, offset + size) of the virtual weights.

    `key` is the parameter's path (a tuple of names; `path` joins it with '/').
    `init_mean`, `init_std` and `init_kurtosis` describe the tensor's own initializer
    (`smh_jax.core.init_stats`): each tensor starts as init_mean + init_std x its unit-std
    slice, and the kurtosis (about -1.2 uniform, -0.63 truncated normal, 0 normal) tells
    bounded from unbounded inits. `box` is the parameter's Flax metadata box (e.g.
    `nn.with_logical_partitioning`) with its value removed, or None: the materialized
    tensor is put back into it.
    """

    key: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    offset: int
    init_std: float
    init_kurtosis: float
    init_mean: float = 0.0
    box: Any = dataclasses.field(default=None, metadata={"json": False})

    @property
    def path(self) -> str:
        """'block1/conv/kernel': the form regular expressions and messages use."""
        return tree_paths.path_str(self.key)

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
    param_order: tuple[tuple[tuple[str, ...], bool], ...]
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

    @property
    def reference_std(self) -> float:
        """The model's typical init std: the size-weighted RMS of the nonzero init stds.

        The fixed scale of a zero-std tensor when scales are frozen (see modifiers).
        """
        weighted = [(t.size, t.init_std) for t in self.hashed if t.init_std > 0]
        total = sum(size for size, _ in weighted)
        if not total:
            return 1.0
        return math.sqrt(sum(size * std * std for size, std in weighted) / total)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be restored into this layout (no init statistics)."""
        return {
            "hashed": [[t.path, list(t.shape), t.offset] for t in self.hashed],
            "unhashed": [tree_paths.path_str(p) for p, hashed in self.param_order
                         if not hashed],
            "pool": self.pool.describe(),
            "index_store": self.index_store,
            "modifiers": list(self.modifiers),
            "learn_scale": self.learn_scale,
            "scale_parameterization": self.scale_parameterization,
        }


def _matches(patterns: tuple[str, ...], path: str) -> bool:
    return any(re.search(p, path) for p in patterns)


def select_hashed(params: Mapping[str, Any], options: SMHOptions,
                  normalization_paths: frozenset[str] = frozenset()
                  ) -> list[tuple[tuple[str, ...], Any]]:
    """The (key, unboxed leaf) pairs to hash, in the order of `params`.

    Default: every floating-point parameter except those of normalization layers (their
    scale/offset fold into the next op at inference; the paper leaves them unhashed).
    `normalization_paths` are the module paths of normalization layers ('block1/bn').
    """
    items = [(key, meta.unbox(leaf)) for key, leaf in tree_paths.ordered_items(params)]
    selected = []
    for key, leaf in items:
        path = tree_paths.path_str(key)
        if not options.hash_normalization and tree_paths.path_str(key[:-1]) in normalization_paths:
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
        selected.append((key, leaf))
    if not selected:
        shown = ", ".join(tree_paths.path_str(k) for k, _ in items[:12])
        shown += ", ..." if len(items) > 12 else ""
        raise UserError(
            f"smh: include={list(options.include) or 'all floating'} exclude="
            f"{list(options.exclude)} select no parameter to hash; the parameters are: {shown}")
    return selected


def _box_template(leaf: Any) -> Any:
    """The leaf's metadata box with its value removed (None for a plain array)."""
    return leaf.replace_boxed(None) if isinstance(leaf, meta.AxisMetadata) else None


def pool_target(options: SMHOptions, num_hashed: int, num_unhashed: int,
                num_tensors: int) -> tuple[tuple[str, float], Fraction]:
    """(requested, T): the pool's exact target size in variables.

    A fraction counts as the decimal it was written as (0.56 is 14/25, not the binary
    float just above it), so T = fraction x N is exact and ceil(T / 2n) never gains a
    whole pool unit from round-off. target_params counts every trainable variable, so
    the unhashed parameters and the learnable per-tensor scalars come off it first.
    """
    if options.fraction is not None:
        return ("fraction", options.fraction), exact_decimal(options.fraction) * num_hashed
    kept = num_unhashed + num_tensors * len(options.learnable_modifiers)
    target = Fraction(options.target_params - kept)
    if target <= 0:
        raise UserError(
            f"smh.target_params: {options.target_params} is not above the {kept} unhashed "
            f"parameters and scales this model keeps anyway ({num_unhashed} unhashed, "
            f"{kept - num_unhashed} scales); allowed: more than {kept}")
    return ("target_params", float(options.target_params)), target


def layer_groups(tensors: Sequence[HashedTensor]) -> tuple[tuple[int, float], ...]:
    """(size, init std) of each run of consecutive hashed tensors of one module (a layer's
    kernel and bias), in tiling order: the hashnet pool's layers. The std is the run's
    size-weighted RMS init std."""
    runs: list[list[HashedTensor]] = []
    for tensor in tensors:
        if runs and runs[-1][-1].key[:-1] == tensor.key[:-1]:
            runs[-1].append(tensor)
        else:
            runs.append([tensor])
    groups = []
    for run in runs:
        size = sum(t.size for t in run)
        std = math.sqrt(sum(t.size * t.init_std ** 2 for t in run) / size)
        groups.append((size, init_stats.rounded(init_stats.InitStats(0.0, std, 0.0)).std))
    return tuple(groups)


def build_layout(params: Mapping[str, Any], options: SMHOptions,
                 normalization_paths: frozenset[str] = frozenset(),
                 stats: Optional[Mapping[tuple[str, ...], InitStats]] = None,
                 order: Optional[Sequence[tuple[str, ...]]] = None) -> Layout:
    """Chooses the hashed tensors, sizes the pool and places each tensor in the tiling.

    `params` gives shapes (abstract arrays are fine); `order` the creation order of
    their paths (default: the order of `params`); `stats` each hashed tensor's init
    statistics (default: measured on `params`, which must then be concrete).
    """
    if order is not None:
        flat = dict(tree_paths.ordered_items(params))
        params = tree_paths.nest([(key, flat[key]) for key in order])
    selected = select_hashed(params, options, normalization_paths)
    hashed_keys = {key for key, _ in selected}
    boxes = {key: _box_template(leaf) for key, leaf in tree_paths.ordered_items(params)}
    tensors, offset = [], 0
    for key, leaf in selected:
        stat = (stats[key] if stats is not None
                else init_stats.rounded(init_stats.from_samples([np.asarray(leaf)])))
        tensors.append(HashedTensor(
            key=key, shape=tuple(int(d) for d in leaf.shape), dtype=str(leaf.dtype),
            offset=offset, init_std=stat.std, init_kurtosis=stat.kurtosis,
            init_mean=stat.mean, box=boxes[key]))
        offset += tensors[-1].size
    num_hashed = offset
    all_items = [(key, meta.unbox(leaf)) for key, leaf in tree_paths.ordered_items(params)]
    num_unhashed = sum(math.prod(leaf.shape) for key, leaf in all_items
                       if key not in hashed_keys)
    requested, target = pool_target(options, num_hashed, num_unhashed, len(tensors))
    pool = make_pool(options.pool, num_hashed, target, options, layer_groups(tensors))
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
        param_order=tuple((key, key in hashed_keys) for key, _ in all_items),
        pool=pool, index_store=options.index_store, pad_value=float(options.pad_value),
        modifiers=options.modifiers, learn_scale=options.learn_scale,
        scale_parameterization=options.scale_parameterization,
        fan_out_gain=float(options.fan_out_gain), bounded_init=bool(bounded),
        dtype=options.dtype, requested=requested)
