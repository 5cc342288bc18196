"""Pools: small sets of trainable variables that generate a long vector of virtual weights.

Each pool is a frozen dataclass (static, hashable: it lives in the layout) with
  num_variables   trainable count,
  virtual_size    number of virtual weights it generates,
  init(rng, std, bounded) -> dict of arrays whose virtual weights have std `std`,
  virtual(params, dtype) -> 1-D array of virtual_size weights.
They are pure functions of their parameters: no Flax, no state.

The product pool is SMH itself (paper Eq. 3-4): the virtual weights are the row-major
entries of A @ B with A (n x M) and B (M x n): one matrix product yields every weight.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from smh_jax.core.options import SMHOptions
from smh_jax.errors import UserError

Params = dict[str, Any]


def _init_entries(rng: jax.Array, shape: tuple[int, ...], std: float, bounded: bool) -> jax.Array:
    """Zero-mean entries of the given std: uniform when the original init is bounded."""
    if bounded:
        limit = math.sqrt(3.0) * std
        return jax.random.uniform(rng, shape, jnp.float32, -limit, limit)
    return std * jax.random.normal(rng, shape, jnp.float32)


@dataclasses.dataclass(frozen=True)
class ProductPool:
    """A @ B, A: side x rank, B: rank x side (the paper's structured multi-hash)."""

    side: int
    rank: int
    kind: str = "product"

    @property
    def num_variables(self) -> int:
        return 2 * self.side * self.rank

    @property
    def virtual_size(self) -> int:
        return self.side * self.side

    def init(self, rng: jax.Array, std: float, bounded: bool) -> Params:
        # Each virtual weight is a sum of `rank` products: var = rank * sigma^4 = std^2.
        sigma = math.sqrt(std) * self.rank ** -0.25
        rng_a, rng_b = jax.random.split(rng)
        return {"a": _init_entries(rng_a, (self.side, self.rank), sigma, bounded),
                "b": _init_entries(rng_b, (self.rank, self.side), sigma, bounded)}

    def matrix(self, params: Params, dtype) -> jax.Array:
        a, b = params["a"].astype(dtype), params["b"].astype(dtype)
        return jnp.dot(a, b, preferred_element_type=dtype)

    def virtual(self, params: Params, dtype) -> jax.Array:
        return self.matrix(params, dtype).reshape(-1)

    def virtual_range(self, params: Params, start: int, stop: int, dtype) -> jax.Array:
        """Virtual weights [start, stop) computed from only the rows of A they need."""
        first_row, last_row = start // self.side, -(-stop // self.side)
        rows = jnp.dot(params["a"][first_row:last_row].astype(dtype), params["b"].astype(dtype),
                       preferred_element_type=dtype).reshape(-1)
        offset = start - first_row * self.side
        return rows[offset:offset + stop - start]

    def describe(self) -> dict[str, Any]:
        return {"pool": self.kind, "n": self.side, "M": self.rank}


@dataclasses.dataclass(frozen=True)
class KroneckerPool:
    """sum_i kron(L_i, R_i), L_i and R_i: side x side; the virtual matrix is side^2 square."""

    side: int
    replicas: int
    kind: str = "kronecker"

    @property
    def num_variables(self) -> int:
        return 2 * self.replicas * self.side * self.side

    @property
    def virtual_size(self) -> int:
        return self.side ** 4

    def init(self, rng: jax.Array, std: float, bounded: bool) -> Params:
        sigma = math.sqrt(std) * self.replicas ** -0.25
        rng_l, rng_r = jax.random.split(rng)
        shape = (self.replicas, self.side, self.side)
        return {"left": _init_entries(rng_l, shape, sigma, bounded),
                "right": _init_entries(rng_r, shape, sigma, bounded)}

    def virtual(self, params: Params, dtype) -> jax.Array:
        left, right = params["left"].astype(dtype), params["right"].astype(dtype)
        # kron(L, R)[a*s + b, c*s + d] = L[a, c] * R[b, d]; row-major over (a, b, c, d).
        blocks = jnp.einsum("iac,ibd->abcd", left, right, preferred_element_type=dtype)
        return blocks.reshape(-1)

    def describe(self) -> dict[str, Any]:
        return {"pool": self.kind, "side": self.side, "replicas": self.replicas,
                "n": self.side * self.side}


_GOLDEN = 0x9E3779B1


def _fmix32(x):
    """MurmurHash3's 32-bit finalizer; works on numpy and jax uint32 alike."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hash_seeds(seed: int, num_hashes: int) -> tuple[int, ...]:
    """One 32-bit seed per hash function, derived from the pool seed."""
    base = np.arange(num_hashes, dtype=np.uint32) + np.uint32(seed * 7919 % (1 << 32))
    return tuple(int(s) for s in _fmix32(base * np.uint32(_GOLDEN) + np.uint32(0x68E31DA4)))


def hash_indices(weight_index, seed: int, size: int):
    """Pool index of each weight under one hash: fmix32(i * golden + seed) mod size."""
    xp = jnp if isinstance(weight_index, jax.Array) else np
    x = weight_index.astype(xp.uint32) * xp.uint32(_GOLDEN) + xp.uint32(seed)
    return (_fmix32(x) % xp.uint32(size)).astype(xp.int32)


@dataclasses.dataclass(frozen=True)
class HashPool:
    """Unstructured multi-hashing: weight i = sum_k pool[h_k(i)] (HashedNets-like, no signs).

    Indices are recomputed inside the step from integer hashes (no N x K index table in
    memory); the cost that remains is the gather and its scatter-add gradient, which is
    the cost the paper's Table 1 compares against.
    """

    size: int
    num_hashes: int
    seed: int
    num_weights: int
    kind: str = "hash"

    @property
    def num_variables(self) -> int:
        return self.size

    @property
    def virtual_size(self) -> int:
        return self.num_weights

    def init(self, rng: jax.Array, std: float, bounded: bool) -> Params:
        return {"pool": _init_entries(rng, (self.size,), std / math.sqrt(self.num_hashes), bounded)}

    def virtual(self, params: Params, dtype) -> jax.Array:
        # Gathers from the float32 variables, sums in float32, then casts: the gradient's
        # scatter-add then stays in float32 (native atomics on GPUs, where bfloat16 ones
        # are emulated) and K terms add without bfloat16 rounding. The fair baseline.
        pool = params["pool"]
        index = jnp.arange(self.num_weights, dtype=jnp.uint32)
        total = None
        for seed in hash_seeds(self.seed, self.num_hashes):
            term = pool[hash_indices(index, seed, self.size)]
            total = term if total is None else total + term
        return total.astype(dtype)

    def describe(self) -> dict[str, Any]:
        return {"pool": self.kind, "size": self.size, "K": self.num_hashes}


def sign_hash(weight_index, seed: int):
    """+-1 per weight from an independent hash: the top bit of fmix32(i * golden + seed)."""
    xp = jnp if isinstance(weight_index, jax.Array) else np
    x = weight_index.astype(xp.uint32) * xp.uint32(_GOLDEN) + xp.uint32(seed)
    return (1 - 2 * (_fmix32(x) >> xp.uint32(31)).astype(xp.int32)).astype(xp.int8)


@dataclasses.dataclass(frozen=True)
class LayerHashPool:
    """HashedNets (Chen et al., ICML 2015): each layer hashed into its own signed buckets.

    `groups` are consecutive runs of the virtual weights, one per layer (its kernel and
    bias together, in tiling order), as (weights, buckets, std): weight i of group g is
    xi_g(i) * buckets_g[h_g(i)], with h and xi independent hashes seeded per group, one
    hash per weight, every layer compressed by the same factor. Deterministic: the
    indices and signs are pure functions of (i, seed, group), recomputed in the step.

    As in HashedNets, the buckets hold weights in their layer's own units: they start
    with the layer's init std (`std` of the group), so the pool needs no per-layer scale
    modifier (its default modifiers are none) and SGD moves the buckets as HashedNets'.
    """

    groups: tuple[tuple[int, int, float], ...]
    seed: int
    kind: str = "hashnet"

    @property
    def num_variables(self) -> int:
        return sum(buckets for _, buckets, _ in self.groups)

    @property
    def virtual_size(self) -> int:
        return sum(weights for weights, _, _ in self.groups)

    def seeds(self, group: int) -> tuple[int, int]:
        """(index seed, sign seed) of a group."""
        index_seed, sign_seed = hash_seeds(self.seed * 1009 + group, 2)
        return index_seed, sign_seed

    def init(self, rng: jax.Array, std: float, bounded: bool) -> Params:
        # A signed single hash keeps each bucket's distribution: virtual std = bucket std.
        parts = [_init_entries(key, (buckets,), std * group_std, bounded) for key, (_, buckets,
                 group_std) in zip(jax.random.split(rng, len(self.groups)), self.groups,
                                   strict=True)]
        return {"buckets": jnp.concatenate(parts)}

    def indices_and_signs(self, group: int) -> tuple[jax.Array, jax.Array]:
        """Global bucket index and sign of every weight of `group`."""
        weights, buckets, _ = self.groups[group]
        offset = sum(b for _, b, _ in self.groups[:group])
        index_seed, sign_seed = self.seeds(group)
        local = jnp.arange(weights, dtype=jnp.uint32)
        return offset + hash_indices(local, index_seed, buckets), sign_hash(local, sign_seed)

    def virtual(self, params: Params, dtype) -> jax.Array:
        buckets = params["buckets"]
        parts = []
        for group in range(len(self.groups)):
            index, sign = self.indices_and_signs(group)
            parts.append(buckets[index] * sign.astype(buckets.dtype))
        return jnp.concatenate(parts).astype(dtype)

    def describe(self) -> dict[str, Any]:
        return {"pool": self.kind, "size": self.num_variables, "layers": len(self.groups)}


@dataclasses.dataclass(frozen=True)
class MetaPool:
    """Sub-pools combined elementwise by sum or product over their common virtual length."""

    pools: tuple[Union[ProductPool, KroneckerPool, HashPool, LayerHashPool], ...]
    combine: str
    kind: str = "meta"

    @property
    def num_variables(self) -> int:
        return sum(p.num_variables for p in self.pools)

    @property
    def virtual_size(self) -> int:
        return min(p.virtual_size for p in self.pools)

    def init(self, rng: jax.Array, std: float, bounded: bool) -> Params:
        # A sum of k independent terms of std s/sqrt(k) has std s; a product of independent
        # zero-mean terms of std s^(1/k) has std s.
        k = len(self.pools)
        sub_std = std / math.sqrt(k) if self.combine == "sum" else std ** (1.0 / k)
        rngs = jax.random.split(rng, k)
        return {str(i): pool.init(rngs[i], sub_std, bounded) for i, pool in enumerate(self.pools)}

    def virtual(self, params: Params, dtype) -> jax.Array:
        length = self.virtual_size
        parts = [p.virtual(params[str(i)], dtype)[:length] for i, p in enumerate(self.pools)]
        out = parts[0]
        for part in parts[1:]:
            out = out + part if self.combine == "sum" else out * part
        return out

    def describe(self) -> dict[str, Any]:
        return {"pool": self.kind, "combine": self.combine,
                "sub_pools": [p.describe() for p in self.pools]}


Pool = Union[ProductPool, KroneckerPool, HashPool, LayerHashPool, MetaPool]


def smallest_fraction(minimum: int, num_weights: int, digits: int = 4) -> Fraction:
    """minimum / num_weights rounded UP to `digits` significant decimal digits, exactly.

    The figure an error message names must itself be accepted: 262 / 16,910 = 0.015494...
    is named 0.0155, whose exact decimal times N reaches the minimum.
    """
    exact = Fraction(minimum, num_weights)
    quantum = Fraction(10) ** (math.floor(math.log10(exact)) - digits + 1)
    rounded = math.ceil(exact / quantum) * quantum
    if rounded * num_weights < minimum:  # guard log10 rounding at a power of ten
        rounded += quantum
    return rounded


def format_exact(value: Fraction) -> str:
    """An exact decimal for a fraction with a terminating expansion, else 12 digits."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    text = format(decimal.Decimal(value.numerator) / decimal.Decimal(value.denominator), "f")
    if Fraction(text) == value:
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{float(value):.12g}"


def _too_small(kind: str, target: Fraction, minimum: int, num_weights: int,
               unit: str) -> UserError:
    if minimum > num_weights:
        allowed = (f"no fraction in (0, 1] reaches it: the {num_weights} hashed weights are "
                   f"fewer than one unit of this pool")
    else:
        allowed = ("the smallest allowed fraction is "
                   f"{format_exact(smallest_fraction(minimum, num_weights))}")
    return UserError(
        f"smh: a target of {format_exact(target)} variables "
        f"({format_exact(Fraction(target) / num_weights)} of the {num_weights} hashed "
        f"weights) is below the smallest {kind} pool, {minimum} variables ({unit}); "
        f"{allowed}")


def product_side(num_weights: int, options: SMHOptions) -> int:
    """n: the `side` option, else ceil(sqrt(N)) (the paper's square virtual matrix)."""
    return options.side or math.isqrt(num_weights - 1) + 1


def kronecker_side(num_weights: int) -> int:
    """s = ceil(N^(1/4)) in exact integer arithmetic: kron(L, R) is s^2 x s^2 >= N."""
    side = math.ceil(num_weights ** 0.25)
    while (side - 1) ** 4 >= num_weights:  # guard float rounding of the 4th root
        side -= 1
    while side ** 4 < num_weights:
        side += 1
    return side


def smallest_pool(kind: str, num_weights: int, options: SMHOptions,
                  groups: Sequence[tuple[int, float]] = ()) -> tuple[int, str]:
    """(variables, description) of the smallest pool of `kind`: one unit of it.

    product: M = 1 (2n); kronecker: one replica (2 s^2); hash: one variable per hash (K);
    meta: one unit of every sub-pool, each getting an equal share (k x the largest unit).
    """
    if kind == "product":
        side = product_side(num_weights, options)
        return 2 * side, f"M = 1 with n = {side}"
    if kind == "kronecker":
        side = kronecker_side(num_weights)
        return 2 * side * side, f"one replica of side {side}"
    if kind == "hash":
        return options.num_hashes, f"one variable per hash, K = {options.num_hashes}"
    if kind == "hashnet":
        layers = len(groups) if groups else 1
        return layers, f"one bucket for each of the {layers} layers"
    if kind == "meta":
        units = [smallest_pool(k, num_weights, options, groups) for k in options.meta_pools]
        largest = max(u for u, _ in units)
        return len(units) * largest, (
            f"an equal share of at least {largest} for each of "
            f"{', '.join(options.meta_pools)}: " + "; ".join(d for _, d in units))
    raise UserError(f"smh.pool: {kind!r} is not one of product, kronecker, hash, meta")


def make_pool(kind: str, num_weights: int, target: Union[int, Fraction],
              options: SMHOptions, groups: Sequence[tuple[int, float]] = ()) -> Pool:
    """Sizes the pool of `kind` for `target` trainable variables over N = num_weights.

    Sizes are the smallest that reach the target (the paper's M = ceil(T / 2n)), in exact
    arithmetic (`target` is an int or a Fraction); a target below one unit of the pool
    (M = 1, one Kronecker replica, ...) is an error that names the smallest allowed
    fraction. `groups` are the layers' (size, init std) in tiling order (the hashnet
    pool hashes each layer separately, into ceil(T / N x size) buckets).
    """
    target = Fraction(target)
    minimum, unit = smallest_pool(kind, num_weights, options, groups)
    if target < minimum:
        raise _too_small(kind, target, minimum, num_weights, unit)
    if kind == "product":
        side = product_side(num_weights, options)
        return ProductPool(side=side, rank=math.ceil(target / (2 * side)))
    if kind == "kronecker":
        side = kronecker_side(num_weights)
        return KroneckerPool(side=side, replicas=math.ceil(target / (2 * side * side)))
    if kind == "hash":
        return HashPool(size=math.ceil(target), num_hashes=options.num_hashes,
                        seed=options.hash_seed, num_weights=num_weights)
    if kind == "hashnet":
        rate = target / num_weights
        return LayerHashPool(groups=tuple((size, max(1, math.ceil(rate * size)), std)
                                          for size, std in (groups or ((num_weights, 1.0),))),
                             seed=options.hash_seed)
    share = target / len(options.meta_pools)  # exact: a Fraction
    subs = tuple(make_pool(k, num_weights, share, options, groups)
                 for k in options.meta_pools)
    return MetaPool(pools=subs, combine=options.meta_combine)
