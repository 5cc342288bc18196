"""SMH options: one frozen, hashable value object validated on construction.

Everything that changes the compressed parameterization lives here, so a config, a
checkpoint fingerprint and a Flax module field can all carry the same object.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from smh_jax.errors import UserError

POOLS = ("product", "kronecker", "hash", "meta")
INDEX_STORES = ("basic", "cyclic", "padding")
# Per-slice modifiers of the reference implementation, applied in the order given.
#   scale:                 the paper's per-layer scale, initialised to the std the layer's own
#                          initializer gives (learnable unless learn_scale=False).
#   fan_out_scale:         constant sqrt(fan_out_gain / fan_out).
#   learned_fan_out_scale: learnable, initialised to sqrt(fan_out_gain / fan_out).
#   learned_scalar:        learnable, initialised to 1.
#   relu:                  max(w, 0).
#   sign:                  sign(w) forward, identity (straight-through) gradient.
MODIFIERS = ("scale", "fan_out_scale", "learned_fan_out_scale", "learned_scalar", "relu", "sign")
LEARNABLE_MODIFIERS = ("learned_fan_out_scale", "learned_scalar")
SCALE_PARAMETERIZATIONS = ("norm", "direct")
INIT_RANGES = ("auto", "normal", "uniform")
META_COMBINES = ("sum", "prod")
DTYPES = ("float32", "bfloat16", "float16")


def _as_patterns(value, field: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    patterns = (value,) if isinstance(value, str) else tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise UserError(
                f"smh.{field}: {pattern!r} is not a string; expected regular expressions")
        try:
            re.compile(pattern)
        except re.error as e:
            raise UserError(
                f"smh.{field}: {pattern!r} is not a valid regular expression ({e})") from None
    return patterns


@dataclasses.dataclass(frozen=True)
class SMHOptions:
    """How a model is compressed. See docs/smh-options.md for each field's meaning.

    Size: give exactly one of `fraction` (target pool size T = fraction x N, N the number
    of hashed weights; paper Sec. 3) or `target_params` (total trainable variables wanted,
    unhashed parameters and scales included, e.g. B0's 5.3M for a compressed B4).
    """

    fraction: Optional[float] = None
    target_params: Optional[int] = None
    pool: str = "product"
    # product pool: side of the virtual square matrix (None: ceil(sqrt(N)), the paper's).
    side: Optional[int] = None
    # hash pool: number of hashes per weight (the paper's Table 1 uses 1, 2 and 10) and seed.
    num_hashes: int = 1
    hash_seed: int = 0
    # meta pool: sub-pools sharing the budget equally, combined elementwise.
    meta_pools: tuple[str, ...] = ("product", "kronecker")
    meta_combine: str = "sum"
    index_store: str = "basic"
    pad_value: float = 0.0
    # Selection by regular expressions (re.search) over '/'-joined parameter paths.
    # None includes every floating-point parameter.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hash_normalization: bool = False
    modifiers: tuple[str, ...] = ("scale",)
    learn_scale: bool = True
    scale_parameterization: str = "norm"
    fan_out_gain: float = 2.0
    init_range: str = "auto"
    # dtype the virtual matrix is computed in (params stay float32).
    dtype: str = "float32"

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "include", _as_patterns(self.include, "include"))
        set_(self, "exclude", _as_patterns(self.exclude, "exclude"))
        set_(self, "modifiers", tuple(self.modifiers))
        set_(self, "meta_pools", tuple(self.meta_pools))
        if (self.fraction is None) == (self.target_params is None):
            raise UserError(
                f"smh: give exactly one of fraction (got {self.fraction!r}) and target_params "
                f"(got {self.target_params!r})")
        if self.fraction is not None:
            if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)):
                raise UserError(f"smh.fraction: {self.fraction!r} is not a number; allowed: (0, 1]")
            if not 0.0 < float(self.fraction) <= 1.0:
                raise UserError(
                    f"smh.fraction: {self.fraction!r} is outside the allowed range (0, 1]")
            set_(self, "fraction", float(self.fraction))
        if self.target_params is not None and (
                isinstance(self.target_params, bool) or not isinstance(self.target_params, int)
                or self.target_params < 1):
            raise UserError(f"smh.target_params: {self.target_params!r} must be a positive integer")
        _check_choice("pool", self.pool, POOLS)
        _check_choice("index_store", self.index_store, INDEX_STORES)
        _check_choice("scale_parameterization", self.scale_parameterization,
                      SCALE_PARAMETERIZATIONS)
        _check_choice("init_range", self.init_range, INIT_RANGES)
        _check_choice("meta_combine", self.meta_combine, META_COMBINES)
        _check_choice("dtype", self.dtype, DTYPES)
        for name in self.modifiers:
            _check_choice("modifiers", name, MODIFIERS)
        if len(set(self.modifiers)) != len(self.modifiers):
            raise UserError(f"smh.modifiers: {self.modifiers!r} lists a modifier twice")
        if self.pool == "meta":
            if len(self.meta_pools) < 2:
                raise UserError(f"smh.meta_pools: {self.meta_pools!r} needs at least two sub-pools")
            for name in self.meta_pools:
                _check_choice("meta_pools", name, ("product", "kronecker", "hash"))
        if not isinstance(self.num_hashes, int) or self.num_hashes < 1:
            raise UserError(f"smh.num_hashes: {self.num_hashes!r} must be an integer >= 1")
        if self.side is not None and (not isinstance(self.side, int) or self.side < 1):
            raise UserError(f"smh.side: {self.side!r} must be None or an integer >= 1")
        if self.fan_out_gain <= 0:
            raise UserError(f"smh.fan_out_gain: {self.fan_out_gain!r} must be > 0")

    @property
    def learnable_modifiers(self) -> tuple[str, ...]:
        """The modifiers that own one trainable scalar per hashed tensor."""
        return learnable_modifiers(self.modifiers, self.learn_scale)

    def replace(self, **changes) -> "SMHOptions":
        return dataclasses.replace(self, **changes)


def learnable_modifiers(modifiers: tuple[str, ...], learn_scale: bool) -> tuple[str, ...]:
    """The modifiers among `modifiers` that own one trainable scalar per hashed tensor."""
    return tuple(m for m in modifiers
                 if m in LEARNABLE_MODIFIERS or (m == "scale" and learn_scale))


def _check_choice(field: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"smh.{field}: {value!r} is not one of {', '.join(allowed)}")
