"""The compression methods compared at equal stored size (HashedNets' benchmark).

A method turns a zoo architecture into a model that stores about `compression` x its
parameters ("stored": every trainable variable the model keeps, per-layer scales
included; fixed random projections are not stored):

    dense        the architecture itself (compression 1)
    nn           every layer narrowed by one common width multiplier, the nearest
                 integer widths (`sizing.match_width`): HashedNets' "NN"
    lrd          per layer W = U V with U fixed random (not stored), rank chosen per layer
                 so that V and the bias hold `compression` of the layer, as published
    lrd_learned  the same with U learned too (both stored)
    hashnet      HashedNets: every layer hashed into its own buckets with a sign hash,
                 one hash per weight, biases hashed (the 'hashnet' pool)
    smh          the library's product pool A @ B (any SMH option may be added)

`build` returns the module and a description; counts come from shapes only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn

import smh_jax
from smh_jax.errors import UserError
from smh_jax.experiments import sizing
from smh_jax.models.spec import ModelSpec, abstract_variables, count_params

METHODS = ("dense", "nn", "lrd", "lrd_learned", "hashnet", "smh")
LOW_RANK_NETS = ("mlp", "mlp3", "mlp5", "lenet_300_100")


@dataclasses.dataclass(frozen=True)
class Built:
    """A method's model and what it is."""

    module: nn.Module
    stored_params: int
    description: dict[str, Any]


def layer_shapes(spec: ModelSpec, input_shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each Dense layer of an MLP, in order."""
    params = abstract_variables(spec.create(), input_shape)["params"]
    names = sorted(params, key=lambda n: int(n[2:]))  # fc1, fc2, ...
    return [tuple(params[n]["kernel"].shape) for n in names]


def low_rank_ranks(shapes: list[tuple[int, int]], compression: float,
                   learned: bool) -> tuple[int, ...]:
    """Per-layer ranks storing about `compression` of each layer ((fan_in + 1) x fan_out).

    Published (U fixed, not stored): rank x fan_out + fan_out = c (fan_in + 1) fan_out.
    Learned (U stored): fan_in x rank + rank x fan_out + fan_out = the same. Every layer
    gets the same factor, the output layer too (at 1/8 the learned variant can give the
    1000 x 10 output layer rank 1 only: U costs 1000 variables a rank).
    """
    ranks = []
    for fan_in, fan_out in shapes:
        budget = compression * (fan_in + 1) * fan_out - fan_out
        rank = budget / (fan_in + fan_out) if learned else budget / fan_out
        ranks.append(max(1, int(round(rank))))
    return tuple(ranks)


def exact_product_size(num_hashed: int, pool_target: int,
                       tolerance: float = 0.01) -> dict[str, int]:
    """{} (the paper's sizing) or a `side`, so the product pool holds T to within 1%.

    The paper's M = ceil(T / 2n) with n = ceil(sqrt(N)) can overshoot T by up to 2n (7%
    of MNIST's 5-layer at 1/64). When it overshoots by more than `tolerance`, take
    M = max(1, floor(T / 2 n0)) and the side n = ceil(T / 2M) >= n0 (the virtual matrix
    still covers every weight; the pool's own rule then gives back M): at most 2M over.
    """
    n0 = math.isqrt(num_hashed - 1) + 1
    if 2 * n0 * -(-pool_target // (2 * n0)) <= (1 + tolerance) * pool_target:
        return {}
    rank = max(1, pool_target // (2 * n0))
    return {"side": max(n0, -(-pool_target // (2 * rank)))}


def build(spec: ModelSpec, method: str, compression: float,
          input_shape: tuple[int, ...], **smh_options: Any) -> Built:
    """The `method` version of `spec` at `compression` (module doc); UserError if unknown."""
    if method not in METHODS:
        raise UserError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if not 0 < compression <= 1:
        raise UserError(f"compression {compression!r} is outside (0, 1]")
    if smh_options and method not in ("hashnet", "smh"):
        raise UserError(f"method {method!r} takes no SMH options (got {sorted(smh_options)})")
    base = spec.create()
    dense_count = count_params(abstract_variables(base, input_shape)["params"])
    target = int(round(compression * dense_count))
    if method == "dense":
        return Built(base, dense_count, {"method": "dense"})
    if method == "nn":
        width, count = sizing.match_width(sizing.width_params(spec, input_shape), target)
        return Built(spec.with_width(width).create(), count,
                     {"method": "nn", "width_multiplier": width})
    if method in ("lrd", "lrd_learned"):
        if spec.name not in LOW_RANK_NETS:
            raise UserError(f"method {method!r} is defined for the MLPs "
                            f"({', '.join(LOW_RANK_NETS)}), not {spec.name!r}")
        learned = method == "lrd_learned"
        ranks = low_rank_ranks(layer_shapes(spec, input_shape), compression, learned)
        low_rank = dataclasses.replace(
            spec, overrides={**spec.overrides, "ranks": ranks, "learned_projection": learned})
        module = low_rank.create()
        return Built(module, count_params(abstract_variables(module, input_shape)["params"]),
                     {"method": method, "ranks": list(ranks)})
    options = {"pool": "hashnet"} if method == "hashnet" else {}
    options.update(smh_options)
    module = smh_jax.compress(base, target_params=target, **options)
    params = abstract_variables(module, input_shape)["params"]
    if method == "smh" and options.get("pool", "product") == "product" and (
            "side" not in options):
        info = smh_jax.accounting(smh_jax.smh_params_of(params))
        options.update(exact_product_size(info["hashed_weights"],
                                          target - info["unhashed"] - info["scales"]))
        module = smh_jax.compress(base, target_params=target, **options)
        params = abstract_variables(module, input_shape)["params"]
    return Built(module, count_params(params), {"method": method, **options})


def relative_size_error(built: Built, dense_count: int, compression: float) -> float:
    """|stored - compression x dense| / (compression x dense)."""
    target = compression * dense_count
    return abs(built.stored_params - target) / target if target else math.inf
