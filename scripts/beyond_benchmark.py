"""Inference memory and latency: dense vs SMH materialize-everything vs SMH per layer.

    python scripts/beyond_benchmark.py                       # ResNet-50 25%, B4 -> 5.3M
    python scripts/beyond_benchmark.py --models resnet50:fraction=0.1 --batches 1,32
    python scripts/beyond_benchmark.py --small               # CPU smoke test (ResNet-20)

For each model and batch size, three jitted inference functions (train=False) of the same
architecture: `dense` (the plain model, dense parameters as arguments), `smh_full` (the
compressed model, which materializes every weight with one A @ B per call, the default)
and `smh_per_layer` (`per_layer=True`: each layer's weights from only its rows of A,
right before the layer; smh_jax/linen/per_layer.py). Memory is the compiled executable's
`memory_analysis()`: arguments (the parameters and the input), temporaries (everything
the program allocates while it runs: activations, A @ B, materialized weights), outputs,
and their total; `peak_memory_in_bytes` where the backend reports it. Latency: every
function compiled once, warmed up, then timed interleaved (each repetition runs each
function once, order rotated) so all see the same machine conditions; median, p10, p90.
Also checks that per-layer logits match full materialization.

Parameter shapes do not depend on the image size (global pooling), so the models are
initialized at a small resolution and run at their own (--resolution overrides it).
Writes JSON (--json) and prints a Markdown table. Bad arguments: `error: ...`, exit 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # runs as `python scripts/beyond_benchmark.py` without installing
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import smh_jax  # noqa: E402
from smh_jax import models  # noqa: E402
from smh_jax.errors import UserError  # noqa: E402

DEFAULT_MODELS = "resnet50:fraction=0.25,efficientnet_b4:target_params=5288548"
VARIANTS = ("dense", "smh_full", "smh_per_layer")
MEMORY_FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
                 "temp_size_in_bytes", "generated_code_size_in_bytes")


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


def memory(compiled: Any) -> dict[str, int]:
    """The executable's memory_analysis(), with the total the device must hold."""
    stats = compiled.memory_analysis()
    out = {name: int(getattr(stats, name, 0) or 0) for name in MEMORY_FIELDS}
    out["total_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                          - out["alias_size_in_bytes"] + out["temp_size_in_bytes"])
    peak = int(getattr(stats, "peak_memory_in_bytes", 0) or 0)
    if peak:
        out["peak_memory_in_bytes"] = peak
    return out


def build(name: str, size: dict[str, Any], num_classes: int, init_resolution: int,
          dtype: str) -> tuple[dict[str, Callable], dict[str, Any], dict[str, Any]]:
    """The three apply functions, their variables, and the compressed model's counts."""
    base = models.create(name, num_classes=num_classes, dtype=jnp.dtype(dtype))
    x = jnp.zeros((1, init_resolution, init_resolution, 3), jnp.float32)
    dense = jax.jit(functools.partial(base.init, train=False))(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)
    compressed = smh_jax.compress(base, **size)
    variables = jax.jit(functools.partial(compressed.init, train=False))(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)
    lean = compressed.clone(per_layer=True)
    functions = {
        "dense": lambda v, x: base.apply(v, x, train=False),
        "smh_full": lambda v, x: compressed.apply(v, x, train=False),
        "smh_per_layer": lambda v, x: lean.apply(v, x, train=False),
    }
    args = {"dense": dense, "smh_full": variables, "smh_per_layer": variables}
    info = compressed.accounting(variables["params"])
    counts = {k: info[k] for k in ("hashed_weights", "n", "M", "trainable", "dense_params")}
    return functions, args, counts


def time_interleaved(calls: dict[str, Callable[[], Any]], repetitions: int
                     ) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved with a rotating order."""
    names = list(calls)
    for name in names:  # warm-up
        jax.block_until_ready(calls[name]())
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repetitions):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            start = time.perf_counter()
            jax.block_until_ready(calls[name]())
            samples[name].append(time.perf_counter() - start)
    return samples


def run_case(name: str, size: dict[str, Any], batch: int, resolution: int,
             num_classes: int, init_resolution: int, repetitions: int, dtype: str
             ) -> dict[str, Any]:
    functions, args, counts = build(name, size, num_classes, init_resolution, dtype)
    x = jax.random.normal(jax.random.key(2), (batch, resolution, resolution, 3), jnp.float32)
    compiled, results = {}, {}
    for variant in VARIANTS:
        start = time.perf_counter()
        compiled[variant] = jax.jit(functions[variant]).lower(args[variant], x).compile()
        results[variant] = {"compile_seconds": time.perf_counter() - start,
                            **memory(compiled[variant])}
    outputs = {v: np.asarray(compiled[v](args[v], x), np.float32) for v in VARIANTS}
    calls = {v: functools.partial(compiled[v], args[v], x) for v in VARIANTS}
    samples = time_interleaved(calls, repetitions)
    for variant in VARIANTS:
        times = np.asarray(samples[variant]) * 1e3
        results[variant].update(
            median_ms=float(np.median(times)), p10_ms=float(np.percentile(times, 10)),
            p90_ms=float(np.percentile(times, 90)), samples_ms=[float(t) for t in times])
    scale = float(np.abs(outputs["smh_full"]).max()) or 1.0
    return {
        "model": name, "size": size, "batch": batch, "resolution": resolution,
        "dtype": dtype, **counts, "variants": results,
        "per_layer_max_abs_diff": float(np.abs(outputs["smh_per_layer"]
                                               - outputs["smh_full"]).max()),
        "logit_scale": scale,
    }


def table(cases: list[dict[str, Any]]) -> str:
    lines = ["| model | batch | variant | args MiB | temp MiB | total MiB | total / dense |"
             " median ms | p10-p90 ms | / dense |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    mib = 1 << 20
    for case in cases:
        dense = case["variants"]["dense"]
        for variant in VARIANTS:
            r = case["variants"][variant]
            lines.append(
                f"| {case['model']} | {case['batch']} | {variant} | "
                f"{r['argument_size_in_bytes'] / mib:.1f} | {r['temp_size_in_bytes'] / mib:.1f}"
                f" | {r['total_bytes'] / mib:.1f} | {r['total_bytes'] / dense['total_bytes']:.2f}"
                f" | {r['median_ms']:.1f} | {r['p10_ms']:.1f}-{r['p90_ms']:.1f} | "
                f"{r['median_ms'] / dense['median_ms']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="NAME:fraction=F or NAME:target_params=P, comma-separated")
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--resolution", type=int, default=0,
                        help="input side (0: each model's own, e.g. 224, 380)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="compute dtype of the models (parameters stay float32)")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--small", action="store_true",
                        help="smoke test: resnet20 at 25%%, 32x32, batches 1,2, 2 repetitions")
    args = parser.parse_args(argv)
    try:
        if args.small:
            args.models, args.batches, args.repetitions = "resnet20:fraction=0.25", "1,2", 2
        model_sizes = parse_models(args.models)
        try:
            batches = [int(b) for b in args.batches.split(",") if b]
        except ValueError:
            raise UserError(f"--batches: {args.batches!r} is not a list of integers") from None
        if not batches or min(batches) < 1 or args.repetitions < 1 or args.resolution < 0:
            raise UserError("--batches, --repetitions must be >= 1 and --resolution >= 0")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = jax.devices()[0]
    header = {"device": f"{jax.device_count()} x {device.device_kind}",
              "platform": device.platform, "host": platform.node(),
              "cpu_count": os.cpu_count(), "jax": jax.__version__,
              "command": "python scripts/beyond_benchmark.py " + " ".join(argv)}
    print(json.dumps(header), flush=True)
    cases = []
    for name, size in model_sizes:
        resolution = args.resolution or models.default_resolution(name)
        num_classes = 10 if models.default_resolution(name) == 32 else 1000
        init_resolution = min(resolution, max(64, models.min_image_size(name)))
        for batch in batches:
            case = run_case(name, size, batch, resolution, num_classes, init_resolution,
                            args.repetitions, args.dtype)
            cases.append(case)
            print(json.dumps({k: v for k, v in case.items() if k != "variants"}), flush=True)
            print(table([case]), flush=True)
    print("\n" + table(cases), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**header, "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
