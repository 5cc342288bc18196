"""SMH options: one frozen, hashable value object validated on construction.

Everything that changes the compressed parameterization lives here, so a config, a
checkpoint fingerprint and a Flax module field can all carry the same object.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
from fractions import Fraction
from typing import Any, Optional

import numpy as np

from smh_jax.errors import UserError

POOLS = ("product", "kronecker", "hash", "hashnet", "meta")
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


def _scalar(value: Any) -> Any:
    """A numpy or jax 0-d value as a numpy scalar; anything else unchanged."""
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__jax_array__") or (
            type(value).__module__.startswith("jax")):
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - e.g. a tracer: reported as not a number
            return value
        if array.shape == ():
            return array[()]
    return value


def _real(value: Any, field: str, allowed: str) -> float:
    """A finite real number (Python, numpy or 0-d jax), as the decimal it was written as.

    A numpy float32 0.1 becomes 0.1, not 0.10000000149011612: its shortest decimal in its
    own precision.
    """
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise UserError(f"smh.{field}: {value!r} is not a number; allowed: {allowed}")
    if isinstance(value, np.floating):
        value = float(np.format_float_positional(value, unique=True, trim="0"))
    value = float(value)
    if not math.isfinite(value):
        raise UserError(f"smh.{field}: {value!r} is not finite; allowed: {allowed}")
    return value


def _integer(value: Any, field: str, allowed: str, minimum: int,
             maximum: Optional[int] = None) -> int:
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise UserError(f"smh.{field}: {value!r} is not an integer; allowed: {allowed}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        raise UserError(f"smh.{field}: {value} is outside the allowed range: {allowed}")
    return value


def _flag(value: Any, field: str) -> bool:
    value = _scalar(value)
    if not isinstance(value, (bool, np.bool_)):
        raise UserError(f"smh.{field}: {value!r} is not a boolean; allowed: True, False")
    return bool(value)


def exact_decimal(value: float) -> Fraction:
    """The decimal a float was written as, exactly: 0.56 -> 14/25 (not the binary float)."""
    return Fraction(repr(float(value)))


@dataclasses.dataclass(frozen=True)
class SMHOptions:
    """How a model is compressed. docs/smh.md describes each field.

    Size: give exactly one of `fraction` (target pool size T = fraction x N, N the number
    of hashed weights; paper Sec. 3) or `target_params` (total trainable variables wanted,
    unhashed parameters and scales included, e.g. B0's 5.3M for a compressed B4).
    Numpy and jax scalars are accepted wherever a number is; every invalid value raises
    a one-line `UserError` naming it and what is allowed.
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
    # None: ("scale",), the paper's per-layer scale; none for the hashnet pool, whose
    # buckets already hold weights in their layers' units (HashedNets).
    modifiers: Optional[tuple[str, ...]] = None
    learn_scale: bool = True
    scale_parameterization: str = "norm"
    fan_out_gain: float = 2.0
    init_range: str = "auto"
    # dtype the virtual matrix A @ B is computed in; each hashed tensor is then cast to
    # its own parameter dtype.
    dtype: str = "float32"

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "include", _as_patterns(self.include, "include"))
        set_(self, "exclude", _as_patterns(self.exclude, "exclude"))
        if self.modifiers is None:
            set_(self, "modifiers", () if self.pool == "hashnet" else ("scale",))
        for field in ("modifiers", "meta_pools"):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise UserError(f"smh.{field}: {value!r} is not a list of names")
            set_(self, field, tuple(value))
        if (self.fraction is None) == (self.target_params is None):
            raise UserError(
                f"smh: give exactly one of fraction (got {self.fraction!r}) and target_params "
                f"(got {self.target_params!r})")
        if self.fraction is not None:
            fraction = _real(self.fraction, "fraction", "(0, 1]")
            if not 0.0 < fraction <= 1.0:
                raise UserError(
                    f"smh.fraction: {fraction!r} is outside the allowed range (0, 1]")
            set_(self, "fraction", fraction)
        if self.target_params is not None:
            set_(self, "target_params", _integer(self.target_params, "target_params",
                                                 "an integer >= 1", 1))
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
        for name in self.meta_pools:
            _check_choice("meta_pools", name, ("product", "kronecker", "hash", "hashnet"))
        if self.pool == "meta" and len(self.meta_pools) < 2:
            raise UserError(f"smh.meta_pools: {self.meta_pools!r} needs at least two sub-pools")
        set_(self, "num_hashes", _integer(self.num_hashes, "num_hashes", "an integer >= 1", 1))
        set_(self, "hash_seed", _integer(self.hash_seed, "hash_seed",
                                         f"an integer in [0, {2 ** 32 - 1}]", 0, 2 ** 32 - 1))
        if self.side is not None:
            set_(self, "side", _integer(self.side, "side", "None or an integer >= 1", 1))
        set_(self, "pad_value", _real(self.pad_value, "pad_value", "a finite number"))
        gain = _real(self.fan_out_gain, "fan_out_gain", "a finite number > 0")
        if gain <= 0:
            raise UserError(f"smh.fan_out_gain: {gain!r} is outside the allowed range: "
                            "a finite number > 0")
        set_(self, "fan_out_gain", gain)
        for field in ("hash_normalization", "learn_scale"):
            set_(self, field, _flag(getattr(self, field), field))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "SMHOptions":
        """Like the constructor, but an unknown option is a UserError listing the known."""
        known = [f.name for f in dataclasses.fields(cls)]
        for name in kwargs:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UserError(f"smh: unknown option {name!r}{hint}; allowed: "
                                f"{', '.join(known)}")
        return cls(**kwargs)

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
    if not isinstance(value, str) or value not in allowed:
        raise UserError(f"smh.{field}: {value!r} is not one of {', '.join(allowed)}")
