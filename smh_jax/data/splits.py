"""Split names with optional TFDS-style slices: 'train', 'train[:90%]', 'test[100:]'.

The in-memory sources resolve them here; TFDS resolves its own with the same syntax.
A held-out part of a split is a slice of it (e.g. train 'train[:90%]', eval
'train[90%:]').
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from smh_jax.errors import UserError

_SPLIT_RE = re.compile(r"^(?P<name>[\w\-]+)(?:\[(?P<lo>-?\d+%?)?:(?P<hi>-?\d+%?)?\])?$")


def parse_split(spec: str) -> tuple[str, str | None, str | None] | None:
    """Splits 'train[10%:90%]' into ('train', '10%', '90%'); None when the syntax is bad."""
    match = _SPLIT_RE.match(spec.strip())
    if match is None:
        return None
    return match.group("name"), match.group("lo"), match.group("hi")


def split_range(spec: str, lo: str | None, hi: str | None, n: int) -> range:
    """Index range of a sliced split, rounding percents like TFDS ('closest')."""

    def bound(text: str | None, default: int) -> int:
        if text is None:
            return default
        if text.endswith("%"):
            pct = int(text[:-1])
            if not -100 <= pct <= 100:
                raise UserError(f"split {spec!r}: percent {text} is outside -100%..100%")
            value = round(pct * n / 100.0)
        else:
            value = int(text)
        if value < 0:
            value += n
        return min(max(value, 0), n)

    return range(bound(lo, 0), bound(hi, n))


def resolve_split(spec: str, available: Sequence[str], size: Callable[[str], int],
                  where: str) -> tuple[str, range]:
    """Maps 'train[:90%]' to ('train', range) or raises naming the available splits.

    `size(name)` is called only for the split asked for, so sources can count lazily.
    """
    parsed = parse_split(spec)
    allowed = ", ".join(repr(s) for s in available) or "none"
    if parsed is None or parsed[0] not in available:
        raise UserError(
            f"split {spec!r} is not in {where}; available splits: {allowed} "
            f"(optionally sliced like 'train[:90%]' or 'train[100:]')"
        )
    base, lo, hi = parsed
    return base, split_range(spec, lo, hi, size(base))
