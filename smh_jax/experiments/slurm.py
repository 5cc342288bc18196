"""A sweep written out instead of run: plain command lines, or a Slurm job array.

Array task i runs run i unless its summary.json exists, so resubmitting the same script
after a partial run only redoes what is missing.
"""

from __future__ import annotations

import datetime
import os
import shlex
from typing import Callable, Sequence

from smh_jax.experiments.expansion import Run
from smh_jax.experiments.scheduler import LOG_FILE, SUMMARY_FILE

DEFAULT_OPTIONS = ("--gres=gpu:1",)


def emit_commands(runs: Sequence[Run], command: Callable[[Run], list[str]]) -> str:
    return "".join(shlex.join(command(r)) + "\n" for r in runs)


def emit_slurm(runs: Sequence[Run], root: str, command: Callable[[Run], list[str]],
               parallel: int, options: Sequence[str] = (), collect_hint: str = "") -> str:
    """An sbatch job-array script: task i runs run i unless its summary.json exists.

    `options` are #SBATCH lines (default: one GPU per task); `parallel` caps the tasks
    running at once; `collect_hint` is the command to run afterwards, quoted in the header.
    """
    root = os.path.abspath(root)
    array = f"0-{len(runs) - 1}" + (f"%{parallel}" if parallel > 1 else "")
    lines = [
        "#!/bin/bash",
        f"# {len(runs)} runs of train.py, written on {datetime.date.today().isoformat()}.",
        "#   sbatch THIS_FILE      (a task whose summary.json exists exits at once)",
        *([f"#   {collect_hint}   (afterwards)"] if collect_hint else []),
        "#SBATCH --job-name=smh_sweep",
        f"#SBATCH --array={array}",
        f"#SBATCH --output={root}/slurm-%A_%a.out",
        *(f"#SBATCH {o}" for o in (options or DEFAULT_OPTIONS)),
        "set -euo pipefail",
        f"cd {shlex.quote(os.getcwd())}",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for i, run in enumerate(runs):
        lines.append(f"  {i}) RUN={run.name}; CMD=({shlex.join(command(run))}) ;;")
    lines += [
        '  *) echo "error: no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        f'DIR={shlex.quote(root)}/"$RUN"',
        'mkdir -p "$DIR"',
        f'if [[ -f "$DIR/{SUMMARY_FILE}" ]]; then echo "$RUN: done before, skipped"; exit 0; fi',
        f'echo "# $(date -Is) ${{CMD[*]}}" >> "$DIR/{LOG_FILE}"',
        f'"${{CMD[@]}}" >> "$DIR/{LOG_FILE}" 2>&1',
        "",
    ]
    return "\n".join(lines)
