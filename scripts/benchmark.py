"""Side by side: what one training step costs with SMH, its baselines and the dense model.

    python scripts/benchmark.py --preset resnet32_cifar --json out.json
    python scripts/benchmark.py --preset resnet50 --variants dense,smh,hash1 --repetitions 50
    python scripts/benchmark.py --preset resnet32_cifar --small          # CPU smoke test

Times the jitted training step of dense, SMH, Kronecker, hash (K = 1, 2, 10) and width
models at equal trainable size, interleaved, with ratios to dense; also the
materialization alone and inference (smh_jax/experiments/benchmark.py says exactly
what). Reported: median, p10/p25/p75/p90, min and the samples; ratios to dense of
medians, of minima, and of paired rounds; memory from each compiled executable's
`memory_analysis()`. The same command runs on CPU and GPU. Bad arguments print
`error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from smh_jax.errors import UserError
from smh_jax.experiments import benchmark, benchmark_report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every entry point here
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = _Parser(description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="resnet32_cifar",
                   help=f"one of {', '.join(benchmark.PRESETS)}")
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--variants", default=",".join(benchmark.DEFAULT_VARIANTS),
                   help="comma-separated: dense, smh, smh_f32, smh_frozen, kronecker, meta, "
                        "hashK, width")
    p.add_argument("--extras", default=",".join(benchmark.EXTRAS),
                   help="comma-separated subset of materialize, inference; 'none' for none")
    p.add_argument("--batch", type=int, default=0, help="override the preset's batch size")
    p.add_argument("--dtype", default="", help="compute dtype: float32, bfloat16, float16, auto")
    p.add_argument("--smh_dtype", default="compute",
                   help="dtype of the virtual matrix: compute (= --dtype), float32, bfloat16")
    p.add_argument("--model", default="", help="override the preset's model (registry name)")
    p.add_argument("--fraction", type=float, default=0.0,
                   help="override the preset's SMH size: a fraction in (0, 1]")
    p.add_argument("--image_size", type=int, default=0, help="override the input side")
    p.add_argument("--repetitions", type=int, default=0, help="timed rounds (default 30; small 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each measurement")
    p.add_argument("--calls_per_sample", type=int, default=1,
                   help="back-to-back calls per timed sample (amortizes the sync on short steps)")
    p.add_argument("--compile_threads", type=int, default=0,
                   help="parallel XLA compiles (0: half the CPUs, at most 8)")
    p.add_argument("--max_seconds", type=float, default=0.0,
                   help="time budget of the whole run: fewer repetitions if needed (0: none)")
    p.add_argument("--small", action="store_true",
                   help="CPU smoke test: batch 4, the model's smallest input, 3 repetitions")
    return p.parse_args(argv)


def options_of(args: argparse.Namespace) -> benchmark.Options:
    return benchmark.Options(
        preset=args.preset, variants=benchmark.variant_names(args.variants),
        extras=benchmark.extra_names(args.extras), batch=args.batch, dtype=args.dtype,
        smh_dtype=args.smh_dtype, model=args.model, fraction=args.fraction,
        image_size=args.image_size,
        repetitions=args.repetitions, warmup=args.warmup,
        calls_per_sample=args.calls_per_sample, compile_threads=args.compile_threads,
        max_seconds=args.max_seconds, small=args.small)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        result = benchmark.run(options_of(args), log=lambda s: print(s, flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except benchmark.NothingMeasured as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["argv"] = sys.argv[1:] if argv is None else list(argv)
    print()
    print(benchmark_report.format_table(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
