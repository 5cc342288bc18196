"""Model sizes from shapes only (`jax.eval_shape`, no compute), and width matching.

The width-multiplier baseline of a compressed run is the same architecture made
thinner until it has as many parameters as the compressed run trains. `match_width` is
the one rule for that, used by the sweep and the benchmark alike:

    the width multiplier k / 1024 (k = 1, 2, ..., 4096) whose parameter count is
    closest to the target; on a tie, the narrower.

A grid rather than a free real number, so the chosen width is a short, exact number on a
command line and every run of a sweep reproduces it; 1/1024 is finer than any channel
rounding of the zoo (one channel of a 1024-wide layer).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import ml_collections

from smh_jax import data as data_lib
from smh_jax.errors import UserError
from smh_jax.models.spec import ModelSpec, abstract_variables, count_params
from smh_jax.training import config_base, experiment

WIDTH_STEPS = 1024
MAX_WIDTH = 4.0


def match_width(count: Callable[[float], int], target: int, steps: int = WIDTH_STEPS,
                max_width: float = MAX_WIDTH) -> tuple[float, int]:
    """(width, count(width)): the multiple of 1/steps whose count is closest to `target`.

    `count` must not decrease with the width (channel counts are rounded per layer, so
    it is a step function); a bisection over the grid then finds the first width whose
    count reaches the target, and it or the width before it is the closest; of several
    widths with that count, the narrowest. Raises UserError when even `max_width` stays
    below the target.
    """
    cache: dict[int, int] = {}

    def count_at(k: int) -> int:
        if k not in cache:
            cache[k] = int(count(k / steps))
        return cache[k]

    top = int(round(max_width * steps))
    # Counts grow about quadratically with the width: bracket that guess first.
    guess = round(steps * math.sqrt(max(target, 1) / max(count_at(steps), 1)))
    lo = min(max(1, guess - steps // 32), top)
    hi = min(max(1, guess + steps // 32), top)
    if count_at(lo) >= target:
        lo = 1
    if count_at(hi) < target:
        hi = top
        if count_at(hi) < target:
            raise UserError(f"width matching: a width of {max_width:g} gives "
                            f"{count_at(hi):,} parameters, fewer than the {target:,} to match")
    while lo < hi:
        mid = (lo + hi) // 2
        if count_at(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min((k for k in (lo - 1, lo) if k >= 1), key=lambda k: abs(count_at(k) - target))
    # The narrowest width with that count (counts can stay flat over several widths). Any
    # width already counted below it bounds the search (counts never decrease).
    if best > 1 and count_at(best - 1) == count_at(best):
        first = 1 + max((k for k, c in cache.items() if k < best and c < cache[best]),
                        default=0)
        last = best
        while first < last:
            mid = (first + last) // 2
            if count_at(mid) >= count_at(best):
                last = mid
            else:
                first = mid + 1
        best = first
    return best / steps, count_at(best)


def width_params(spec: ModelSpec, input_shape: tuple[int, ...]) -> Callable[[float], int]:
    """width -> parameter count of `spec`'s architecture at that width (shapes only)."""
    def count(width: float) -> int:
        return count_params(abstract_variables(spec.with_width(width).create(),
                                               input_shape)["params"])
    return count


class Sizer:
    """Trainable counts of training configs, cached (a sweep asks about each many times)."""

    def __init__(self):
        self._info: dict[str, data_lib.DatasetInfo] = {}
        self._trainable: dict[str, int] = {}
        self._width: dict[tuple[str, float], int] = {}

    def info(self, config: ml_collections.ConfigDict) -> data_lib.DatasetInfo:
        key = json.dumps(config.dataset.to_dict(), sort_keys=True, default=str)
        if key not in self._info:
            self._info[key] = data_lib.get_info(config.dataset)
        return self._info[key]

    def spec(self, config: ml_collections.ConfigDict) -> ModelSpec:
        return experiment.model_spec(config, self.info(config))

    def input_shape(self, config: ml_collections.ConfigDict) -> tuple[int, ...]:
        return experiment.input_shape(self.info(config))

    def trainable(self, config: ml_collections.ConfigDict) -> int:
        """Trainable variables of the run `config` describes (SMH: factors, scales, BN)."""
        key = json.loads(config.to_json_best_effort(sort_keys=True))
        key.pop("seed", None)  # seeds share a count
        key = json.dumps(key, sort_keys=True)
        if key not in self._trainable:
            module = experiment.create_model(self.spec(config), config)
            params = abstract_variables(module, self.input_shape(config))["params"]
            self._trainable[key] = experiment.trainable_params(
                params, compressed=not config_base.is_dense(config))
        return self._trainable[key]

    def params_at_width(self, config: ml_collections.ConfigDict, width: float) -> int:
        """Parameters of the config's architecture (uncompressed) at `width`."""
        spec = self.spec(config)
        key = (json.dumps(spec.with_width(1.0).to_json(), sort_keys=True), float(width))
        if key not in self._width:
            self._width[key] = width_params(spec, self.input_shape(config))(width)
        return self._width[key]

    def match_width(self, config: ml_collections.ConfigDict, target: int,
                    **grid: Any) -> tuple[float, int]:
        """`match_width` over the config's architecture."""
        return match_width(lambda w: self.params_at_width(config, w), target, **grid)
