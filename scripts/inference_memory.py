"""Inference memory and latency: dense vs SMH materialize-everything vs SMH per layer.

    python scripts/inference_memory.py                       # ResNet-50 25%, B4 -> 5.3M
    python scripts/inference_memory.py --models resnet50:fraction=0.1 --batches 1,32
    python scripts/inference_memory.py --small               # CPU smoke test (ResNet-20)

For each model and batch size: the plain model, the compressed model materializing every
weight at once, and the compressed model materializing one layer at a time; the memory
of each compiled program, interleaved latencies, and the per-layer logits checked
against full materialization (smh_jax/experiments/inference_memory.py). Writes JSON
(--json) and prints a Markdown table. Bad arguments: `error: ...`, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from smh_jax import models
from smh_jax.errors import UserError
from smh_jax.experiments import inference_memory, provenance


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=inference_memory.DEFAULT_MODELS,
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
        model_sizes = inference_memory.parse_models(args.models)
        try:
            batches = [int(b) for b in args.batches.split(",") if b]
        except ValueError:
            raise UserError(f"--batches: {args.batches!r} is not a list of integers") from None
        if not batches or min(batches) < 1 or args.repetitions < 1 or args.resolution < 0:
            raise UserError("--batches, --repetitions must be >= 1 and --resolution >= 0")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    header = {**provenance.environment(),
              "command": "python scripts/inference_memory.py " + " ".join(argv)}
    print(json.dumps(header), flush=True)
    cases = []
    for name, size in model_sizes:
        resolution = args.resolution or models.default_resolution(name)
        for batch in batches:
            case = inference_memory.run_case(name, size, batch, resolution, args.repetitions,
                                             args.dtype)
            cases.append(case)
            print(json.dumps({k: v for k, v in case.items() if k != "variants"}), flush=True)
            print(inference_memory.table([case]), flush=True)
    print("\n" + inference_memory.table(cases), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**header, "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
