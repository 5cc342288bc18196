"""Inference memory and latency: dense vs SMH materialize-everything vs SMH per layer.

For a model and batch size, three jitted inference functions (train=False) of the same
architecture: `dense` (the plain model, dense parameters as arguments), `smh_full` (the
compressed model, which materializes every weight with one A @ B per call, the default)
and `smh_per_layer` (`per_layer=True`: each layer's weights from only its rows of A,
right before the layer; smh_jax/linen/per_layer.py). Memory is the compiled
executable's (`timing.memory_bytes`): arguments (the parameters and the input),
temporaries (activations, A @ B, materialized weights), outputs and the peak. Latency:
every function compiled once, warmed up, then timed interleaved
(`timing.time_interleaved`). Also checks that per-layer logits match full
materialization.

Parameter shapes do not depend on the image size (global pooling), so the models are
initialized at a small resolution and run at their own.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import smh_jax
from smh_jax import models
from smh_jax.errors import UserError
from smh_jax.experiments import timing
from smh_jax.models.spec import ModelSpec

VARIANTS = ("dense", "smh_full", "smh_per_layer")
DEFAULT_MODELS = "resnet50:fraction=0.25,efficientnet_b4:target_params=5288548"


def parse_models(text: str) -> list[tuple[str, dict[str, Any]]]:
    """'resnet50:fraction=0.25,efficientnet_b4:target_params=5288548' -> [(name, size)]."""
    out = []
    for item in filter(None, text.split(",")):
        name, _, size = item.partition(":")
        key, _, value = size.partition("=")
        if name not in models.names():
            raise UserError(f"--models: {name!r} is not a known model; allowed: "
                            f"{', '.join(models.names())}")
        if key not in ("fraction", "target_params") or not value:
            raise UserError(f"--models: {item!r} must be NAME:fraction=F or "
                            "NAME:target_params=P")
        try:
            out.append((name, {key: float(value) if key == "fraction" else int(value)}))
        except ValueError:
            raise UserError(f"--models: {value!r} in {item!r} is not a number") from None
    if not out:
        raise UserError("--models is empty")
    return out


def default_num_classes(name: str) -> int:
    """10 for the CIFAR ResNets (32x32 models), 1000 for the ImageNet ones."""
    return 10 if models.default_resolution(name) == 32 else 1000


def build(spec: ModelSpec, size: dict[str, Any], init_resolution: int
          ) -> tuple[dict[str, Callable], dict[str, Any], dict[str, Any]]:
    """The three apply functions, their variables, and the compressed model's counts."""
    base = spec.create()
    x = jnp.zeros((1, init_resolution, init_resolution, 3), jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    dense = jax.jit(functools.partial(base.init, train=False))(rngs, x)
    compressed = smh_jax.compress(base, **size)
    variables = jax.jit(functools.partial(compressed.init, train=False))(rngs, x)
    per_layer = compressed.clone(per_layer=True)
    functions = {
        "dense": lambda v, x: base.apply(v, x, train=False),
        "smh_full": lambda v, x: compressed.apply(v, x, train=False),
        "smh_per_layer": lambda v, x: per_layer.apply(v, x, train=False),
    }
    args = {"dense": dense, "smh_full": variables, "smh_per_layer": variables}
    info = compressed.accounting(variables["params"])
    counts = {k: info[k] for k in ("hashed_weights", "n", "M", "trainable", "dense_params")}
    return functions, args, counts


def run_case(name: str, size: dict[str, Any], batch: int, resolution: int, repetitions: int,
             dtype: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One model at one batch size: memory, latency and the per-layer check."""
    spec = ModelSpec(name, num_classes=default_num_classes(name), dtype=dtype)
    init_resolution = min(resolution, max(64, models.min_image_size(name)))
    functions, args, counts = build(spec, size, init_resolution)
    x = jax.random.normal(jax.random.key(2), (batch, resolution, resolution, 3), jnp.float32)
    measurements = []
    for variant in VARIANTS:
        start = time.perf_counter()
        compiled = jax.jit(functions[variant]).lower(args[variant], x).compile()
        measurements.append(timing.Measurement(
            "inference", variant, (args[variant], x), compiled=compiled,
            compile_s=time.perf_counter() - start, memory=timing.memory_bytes(compiled)))
    outputs = {m.name: np.asarray(m.compiled(*m.args), np.float32) for m in measurements}
    timing.time_interleaved(measurements, warmup=1, repetitions=repetitions,
                            log=lambda text: None)
    results = {}
    for m in measurements:
        stats = timing.summarize_samples(m.samples)
        results[m.name] = {"compile_seconds": m.compile_s, **m.memory,
                           "median_ms": stats["median"], "p10_ms": stats["p10"],
                           "p90_ms": stats["p90"], "samples_ms": [s * 1e3 for s in m.samples]}
    return {
        "model": name, "size": size, "batch": batch, "resolution": resolution,
        "dtype": dtype, **counts, "variants": results,
        "per_layer_max_abs_diff": float(np.abs(outputs["smh_per_layer"]
                                               - outputs["smh_full"]).max()),
        "logit_scale": float(np.abs(outputs["smh_full"]).max()) or 1.0,
    }


def table(cases: list[dict[str, Any]]) -> str:
    """Markdown: memory (MiB) and latency of each variant, and both against dense."""
    lines = ["| model | batch | variant | args MiB | temp MiB | peak MiB | peak / dense |"
             " median ms | p10-p90 ms | / dense |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    mib = 1 << 20
    for case in cases:
        dense = case["variants"]["dense"]
        for variant in VARIANTS:
            r = case["variants"][variant]
            lines.append(
                f"| {case['model']} | {case['batch']} | {variant} | "
                f"{r['argument'] / mib:.1f} | {r['temp'] / mib:.1f}"
                f" | {r['peak'] / mib:.1f} | {r['peak'] / dense['peak']:.2f}"
                f" | {r['median_ms']:.1f} | {r['p10_ms']:.1f}-{r['p90_ms']:.1f} | "
                f"{r['median_ms'] / dense['median_ms']:.2f} |")
    return "\n".join(lines)
