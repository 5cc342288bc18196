r"""Sweeps of train.py: run here (K at once) or written out as a Slurm job array, then
collected into a CSV, a Markdown table and the accuracy-vs-size plot.

    # A preset (configs/sweeps/NAME.py lists its runs), 6 at once on this host:
    python scripts/sweep.py --preset=cifar10_resnet32 --root=/tmp/r32 --parallel=6
    # Any sweep from flags; a variant is a name plus extra config overrides:
    python scripts/sweep.py --config=configs/resnet20_cifar10_smh.py:fast \
        --fractions=0.25,0.1 --width_fractions=0.25 --seeds=0,1 \
        --variant=hash2=smh.pool=hash,smh.num_hashes=2,smh.fraction=0.1 --root=/tmp/r20
    # A job array for a cluster instead of running here, then collect when it is done:
    python scripts/sweep.py --preset=cifar10_resnet32 --root=/shared/r32 --emit=slurm > r32.sbatch
    python scripts/sweep.py --root=/shared/r32 --collect_only --out_dir=docs/results \
        --name=cifar10_resnet32

Every run is `python train.py --config=CONFIG --workdir=ROOT/<run> --config.<k>=<v>...`,
logged to ROOT/<run>/log.txt. A run whose summary.json exists is skipped, so rerunning
the same command resumes the sweep (and train.py resumes an interrupted run from its
checkpoints). Width baselines are matched to the SMH run of the same fraction
(smh_jax/experiments/sizing.py says how). Bad input: `error: ...` on one line, exit 2.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Optional, Sequence

from smh_jax.errors import UserError
from smh_jax.experiments import (collect, expansion, grid, grid_report, scheduler, slurm,
                                 sweep_plan)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET_DIR = os.path.join(REPO, "configs", "sweeps")
TRAIN_SCRIPT = os.path.join(REPO, "train.py")


def preset_names() -> list[str]:
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(PRESET_DIR, "*.py")))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every entry point here
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="one workdir per run under ROOT")
    p.add_argument("--preset", help=f"NAME[:ARG] of configs/sweeps/ ({', '.join(preset_names())}) "
                   "or a preset file's path")
    p.add_argument("--config", action="append", help="config file[:arg]; repeat for several")
    p.add_argument("--fractions", help="SMH fractions, e.g. 0.25,0.1,0.05")
    p.add_argument("--width_fractions", help="width baselines matched to SMH at these fractions")
    p.add_argument("--seeds", default="0", help="e.g. 0,1,2 (default 0)")
    p.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True,
                   help="include the dense run (default: yes)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,...]",
                   help="an extra named run with these overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every run, e.g. num_epochs=30 or dataset.path=...")
    p.add_argument("--groups", help="resident presets: only the groups whose names match "
                   "these comma-separated patterns, e.g. 'mlp5_*_1-8,mlp3_dense_1'")
    p.add_argument("--parallel", type=int, default=1, help="runs at once on this host")
    p.add_argument("--mem_fraction", type=float, default=None,
                   help="XLA_PYTHON_CLIENT_MEM_FRACTION per run when --parallel > 1 "
                        "(default 0.75 / parallel)")
    p.add_argument("--time_limit", type=float, default=0.0,
                   help="seconds; then running runs are stopped (checkpointed) and collected")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds a stopped run may take to checkpoint before SIGKILL")
    p.add_argument("--emit", choices=("slurm", "commands"),
                   help="print a job-array script / the commands instead of running")
    p.add_argument("--slurm_option", action="append", default=[],
                   help="an #SBATCH line, e.g. --slurm_option=--time=02:00:00 "
                        "(default --gres=gpu:1)")
    p.add_argument("--collect_only", action="store_true", help="only aggregate ROOT")
    p.add_argument("--out_dir", help="where NAME.csv, NAME_tables.md, .png, .svg go (default ROOT)")
    p.add_argument("--name", default="results", help="file name stem of the results")
    p.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    p.add_argument("--train_script", default=TRAIN_SCRIPT, help="the train.py to run")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.parallel < 1:
        raise UserError(f"--parallel {args.parallel}: must be >= 1")
    if args.mem_fraction is not None and not 0 < args.mem_fraction <= 1:
        raise UserError(f"--mem_fraction {args.mem_fraction}: must be in (0, 1]")
    if args.time_limit < 0 or args.grace < 0:
        raise UserError(f"--time_limit {args.time_limit} / --grace {args.grace}: must be >= 0")
    grid_flags = [f"--{k}" for k in ("config", "fractions", "width_fractions", "variant")
                  if getattr(args, k)]
    if args.preset and grid_flags:
        raise UserError(f"--preset lists its own runs; drop {', '.join(grid_flags)} (or give "
                        "no --preset)")


def preset_path(args: argparse.Namespace) -> tuple[str, Optional[str]]:
    name, _, arg = args.preset.partition(":")
    path = name if name.endswith(".py") else os.path.join(PRESET_DIR, f"{name}.py")
    if not os.path.isfile(path):
        raise UserError(f"--preset {args.preset!r}: no {path}; presets: "
                        f"{', '.join(preset_names())}")
    return path, arg or None


def load_sweep(args: argparse.Namespace) -> sweep_plan.Sweep:
    """The preset, or the grid the flags describe."""
    if args.preset:
        return sweep_plan.load_preset(*preset_path(args))
    variants = [sweep_plan.parse_variant(v) for v in args.variant]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise UserError(f"--variant names repeat: {names}")
    runs = expansion.grid_runs(
        args.config or [], sets(args),
        sweep_plan.parse_floats(args.fractions or "", "--fractions"),
        sweep_plan.parse_floats(args.width_fractions or "", "--width_fractions"),
        sweep_plan.parse_ints(args.seeds, "--seeds"), args.dense, variants)
    return sweep_plan.Sweep(tuple(runs))


def sets(args: argparse.Namespace) -> list[str]:
    return [sweep_plan.parse_override(s, "--set") for s in args.set]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def run_resident(args: argparse.Namespace, name: str, config) -> int:
    """A resident preset (kind='resident'): groups trained in-process, then the report."""
    if args.emit or args.time_limit:
        raise UserError(f"--preset {name!r} trains in this process; --emit and --time_limit "
                        "apply to train.py sweeps only")
    grid.apply_sets(config, args.set)
    plan = grid.plan_from_config(name, config)
    if args.groups:
        if args.collect_only:
            raise UserError(f"--groups {args.groups!r} selects groups to train; "
                            "--collect_only reports every group under --root")
        plan = grid.only_groups(plan, [p.strip() for p in args.groups.split(",") if p.strip()])
    if not args.collect_only:
        wall = grid.run(plan, args.root, args.parallel, log=lambda t: print(t, flush=True))
        print(f"{name}: {len(plan.groups)} groups in {wall:.0f} s", flush=True)
    paths = grid_report.write(args.root, args.out_dir or args.root, args.name,
                              plan.references, plan.title)
    print("\n".join(paths))
    return 0


def _main(args: argparse.Namespace) -> int:
    log = lambda text: print(text, flush=True)  # noqa: E731
    out_dir = args.out_dir or args.root
    if args.preset:
        name, config = sweep_plan.load_preset_config(*preset_path(args))
        if config.get("kind") == "resident":
            return run_resident(args, name, config)
    if args.groups:
        raise UserError(f"--groups {args.groups!r}: selects groups of a resident preset "
                        "(hashednets_mnist, lenet_mnist, ...); this sweep has none")
    if args.collect_only:
        paths = collect.write_results(args.root, out_dir, args.name)
        print("\n".join(paths.values()))
        return 0
    check_args(args)
    sweep = load_sweep(args)
    # Sizing needs shapes only: keep this process off the accelerator (the runs need it).
    child_base = dict(os.environ)
    os.environ["JAX_PLATFORMS"] = "cpu"
    runs = expansion.expand(sweep.runs, sets(args))

    def command(run: expansion.Run) -> list[str]:
        return run.command(args.root, args.python, args.train_script)

    print(expansion.format_plan(runs), file=sys.stderr if args.emit else sys.stdout,
          flush=True)
    expansion.write_plan(args.root, runs, [command(r) for r in runs], sweep.title,
                         sweep.references, sweep.preset)
    if args.emit == "commands":
        sys.stdout.write(slurm.emit_commands(runs, command))
        return 0
    if args.emit == "slurm":
        hint = f"python scripts/sweep.py --root={args.root} --collect_only"
        sys.stdout.write(slurm.emit_slurm(runs, args.root, command, args.parallel,
                                          args.slurm_option, hint))
        return 0
    env = scheduler.child_env(child_base, args.parallel, args.mem_fraction)
    outcome = scheduler.execute(runs, args.root, command, args.parallel, env,
                                args.time_limit, args.grace, log=log)
    paths = collect.write_results(args.root, out_dir, args.name)
    print("\n".join(paths.values()))
    failed = {n: o for n, o in outcome.items() if not scheduler.succeeded(o)}
    for name, text in failed.items():
        print(f"not complete: {name}: {text}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
