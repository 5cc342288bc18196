"""The statistics of a parameter's own initializer: mean, std and shape of its distribution.

SMH starts every hashed tensor with its initializer's mean and std (paper Sec. 3.3: match
the scale per layer; match the range, bounded or unbounded, through the kurtosis). These
numbers are static (they live in the layout), so they must be identical however, and on
whatever backend, `init` runs:

- Known initializers (what `jax.nn.initializers` / `flax.linen.initializers` build:
  variance scaling and its He/LeCun/Glorot variants, normal, uniform, truncated normal,
  orthogonal, constant, zeros, ones) get their statistics *analytically* from the
  initializer's own arguments and the tensor's shape: exact, backend-independent, and
  exact for tiny tensors too, where one draw is very noisy (a 2x2 kernel's sample std can
  be a tenth of the true one).
- An initializer of one's own can declare its statistics: a function attribute
  `init_stats(shape) -> InitStats` (the model zoo's TF- and PyTorch-style initializers
  do). Declared statistics count as analytic.
- Any other initializer is *sampled*: drawn with fixed threefry keys (bit-identical on
  every backend, unlike 'rbg' keys), repeatedly for small tensors so that at least
  `MIN_SAMPLES` values are pooled, in float64. A sampled mean counts as nonzero only when
  it is significant (`MEAN_SIGNIFICANCE` standard errors, about 0.08 std at 4096 values):
  a zero-mean initializer then keeps mean exactly 0 and the paper's formula bit for bit.

Pure functions; no Flax. Statistics are rounded to 6 significant digits (kurtosis to 3),
so that float differences in the last bits cannot change a layout.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

MIN_SAMPLES = 4096  # values pooled over repeated draws of a sampled initializer
MAX_DRAWS = 4096  # ... drawing at most this many times
MEAN_SIGNIFICANCE = 5.0  # standard errors a sampled mean needs to count as nonzero
DECLARED_ATTRIBUTE = "init_stats"  # an initializer's own `init_stats(shape) -> InitStats`


class TracedInitializer(TypeError):
    """The initializer's result depends on traced values (data, other parameters)."""


@dataclasses.dataclass(frozen=True)
class InitStats:
    """mean, std and excess kurtosis (-1.2 uniform, about -0.63 truncated normal, 0 normal)."""

    mean: float
    std: float
    kurtosis: float
    analytic: bool = True


def _round(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def rounded(stats: InitStats) -> InitStats:
    """Platform-stable statistics: 6 significant digits, kurtosis to 3."""
    return InitStats(mean=_round(stats.mean), std=_round(stats.std),
                     kurtosis=_round(stats.kurtosis, 3), analytic=stats.analytic)


# ----------------------------------------------------------------------------- analytic

def _normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_normal_stats(lower: float, upper: float, stddev: float = 1.0) -> InitStats:
    """A standard normal truncated to [lower, upper], times stddev (exact moments).

    E[x^k] = (k-1) E[x^(k-2)] + (a^(k-1) phi(a) - b^(k-1) phi(b)) / Z on [a, b].
    """
    a, b = float(lower), float(upper)
    z = _normal_cdf(b) - _normal_cdf(a)
    raw = [1.0, (_normal_pdf(a) - _normal_pdf(b)) / z]
    for k in (2, 3, 4):
        raw.append((k - 1) * raw[k - 2]
                   + (a ** (k - 1) * _normal_pdf(a) - b ** (k - 1) * _normal_pdf(b)) / z)
    m1, m2, m3, m4 = raw[1:]
    var = m2 - m1 * m1
    central4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 ** 4
    return InitStats(mean=m1 * stddev, std=math.sqrt(var) * abs(stddev),
                     kurtosis=central4 / (var * var) - 3.0)


_TRUNCATED_2 = truncated_normal_stats(-2.0, 2.0)
UNIFORM_KURTOSIS = -1.2


def _code(factory: Callable[[], Callable]) -> Any:
    return getattr(factory(), "__code__", None)


_INIT = jax.nn.initializers
_CODES = {
    "constant": _code(lambda: _INIT.constant(0.0)),
    "uniform": _code(lambda: _INIT.uniform()),
    "normal": _code(lambda: _INIT.normal()),
    "truncated_normal": _code(lambda: _INIT.truncated_normal()),
    "variance_scaling": _code(lambda: _INIT.variance_scaling(1.0, "fan_in", "normal")),
    "orthogonal": _code(lambda: _INIT.orthogonal()),
}


def _unwrapped(fn: Any) -> Any:
    """The initializer under `functools.wraps` wrappers (nn.with_partitioning and kin)."""
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 16:
        fn, seen = fn.__wrapped__, seen + 1
    return fn


def _shape_and_dtype(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(shape, dtype) of a `jax.nn.initializers` call `init(key, shape, dtype=...)`."""
    shape = args[0] if args else kwargs.get("shape")
    dtype = args[1] if len(args) > 1 else kwargs.get("dtype")
    return shape, dtype


def _concrete(*values: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def _fans(shape: tuple[int, ...], in_axis: Any, out_axis: Any, batch_axis: Any) -> tuple:
    """fan_in, fan_out exactly as jax.nn.initializers.variance_scaling computes them."""
    def size(axes):
        if isinstance(axes, int):
            return shape[axes]
        return math.prod(shape[i] for i in axes)

    receptive = math.prod(shape) / size(in_axis) / size(out_axis) / size(batch_axis)
    return size(in_axis) * receptive, size(out_axis) * receptive


def analytic(init_fn: Callable, args: Sequence[Any], kwargs: dict[str, Any]) -> Optional[InitStats]:
    """Exact statistics of a known initializer called as `init_fn(key, *args, **kwargs)`.

    None when the initializer is neither one of jax's own nor declares its statistics,
    or its arguments are traced.
    """
    fn = _unwrapped(init_fn)
    shape, dtype = _shape_and_dtype(args, kwargs)
    if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
        return None
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None
    declared = getattr(fn, DECLARED_ATTRIBUTE, None)
    if callable(declared):
        return declared(shape)
    if fn is _INIT.zeros:
        return InitStats(0.0, 0.0, 0.0)
    if fn is _INIT.ones:
        return InitStats(1.0, 0.0, 0.0)
    code = getattr(fn, "__code__", None)
    if code is None or code not in _CODES.values():
        return None
    try:
        closure = inspect.getclosurevars(fn).nonlocals
    except (TypeError, ValueError):
        return None
    if not _concrete(closure):
        return None
    if code is _CODES["constant"]:
        values = np.broadcast_to(np.asarray(closure["value"], np.float64), shape)
        if values.size == 0:
            return None
        return InitStats(float(values.mean()), float(values.std()), 0.0)
    if code is _CODES["uniform"]:
        scale = float(closure["scale"])  # U[0, scale)
        return InitStats(scale / 2.0, abs(scale) / math.sqrt(12.0), UNIFORM_KURTOSIS)
    if code is _CODES["normal"]:
        return InitStats(0.0, abs(float(closure["stddev"])), 0.0)
    if code is _CODES["orthogonal"]:
        # Orthonormal rows or columns of a (size / cols) x cols matrix: mean square
        # 1 / max(rows, cols); entries are nearly normal (excess kurtosis -6 / (max + 2)).
        if len(shape) < 2:
            return None
        cols = shape[closure["column_axis"]]
        longest = max(math.prod(shape) // cols, cols)
        return InitStats(0.0, abs(float(closure["scale"])) / math.sqrt(longest),
                         -6.0 / (longest + 2))
    if code is _CODES["truncated_normal"]:
        return truncated_normal_stats(float(closure["lower"]), float(closure["upper"]),
                                      float(closure["stddev"]))
    # variance_scaling (He, LeCun, Glorot, ...): std sqrt(scale / n) for every distribution.
    try:
        fan_in, fan_out = _fans(shape, closure["in_axis"], closure["out_axis"],
                                closure["batch_axis"])
    except (IndexError, ZeroDivisionError, KeyError, TypeError):
        return None
    denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
                   "fan_geo_avg": math.sqrt(fan_in * fan_out)}.get(closure["mode"])
    kurtosis = {"normal": 0.0, "uniform": UNIFORM_KURTOSIS,
                "truncated_normal": _TRUNCATED_2.kurtosis}.get(closure["distribution"])
    if not denominator or kurtosis is None:
        return None
    return InitStats(0.0, math.sqrt(float(closure["scale"]) / denominator), kurtosis)


# ----------------------------------------------------------------------------- sampled

def from_samples(samples: Sequence[Any]) -> InitStats:
    """Statistics of pooled draws, in float64; an insignificant mean counts as exactly 0."""
    values = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in samples])
    if values.size == 0:
        return InitStats(0.0, 0.0, 0.0, analytic=False)
    mean = float(values.mean())
    centered = values - mean
    var = float(np.mean(centered ** 2))
    std = math.sqrt(var)
    kurtosis = 0.0
    if var > 0 and values.size >= 4:
        kurtosis = float(np.mean(centered ** 4) / var ** 2 - 3.0)
    if std > 0 and abs(mean) <= MEAN_SIGNIFICANCE * std / math.sqrt(values.size):
        mean = 0.0
    return InitStats(mean, std, kurtosis, analytic=False)


def draws_needed(size: int) -> int:
    """How many draws of a `size`-value initializer pool at least MIN_SAMPLES values."""
    return max(1, min(MAX_DRAWS, -(-MIN_SAMPLES // max(size, 1))))


def sample(init_fn: Callable, args: Sequence[Any], kwargs: dict[str, Any],
           unbox: Callable[[Any], Any] = lambda v: v) -> InitStats:
    """Statistics of `init_fn(key, *args, **kwargs)` over fixed threefry keys, concretely.

    Runs at trace time too (compile-time evaluation). Raises `TracedInitializer` when
    the draws depend on a traced value, and whatever else the initializer raises when
    called outside its model.
    """
    draw = lambda key: unbox(init_fn(key, *args, **kwargs))  # noqa: E731
    with jax.ensure_compile_time_eval():
        # Keys made here, not outside: under an enclosing trace they would be tracers.
        shape = jax.eval_shape(draw, jax.random.key(0, impl="threefry2x32")).shape
        count = draws_needed(math.prod(shape))

        def draws(vectorized: bool):
            keys = jax.random.split(jax.random.key(0, impl="threefry2x32"), count)
            if vectorized:
                return jax.vmap(draw)(keys)
            return jnp.stack([draw(key) for key in keys[:64]])

        # One compiled program per initializer (op-by-op eager evaluation costs seconds).
        try:
            values = jax.jit(draws, static_argnums=0)(True)
        except TracedInitializer:
            raise
        except Exception:  # noqa: BLE001 - an initializer that does not vmap
            values = jax.jit(draws, static_argnums=0)(False)
        if not _concrete(values):
            raise TracedInitializer("the initializer closes over a traced value")
        return from_samples([np.asarray(jax.device_get(values))])
