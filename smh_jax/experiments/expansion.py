"""From a sweep's run list to validated, sized train.py runs, and the plan on disk.

Every run's config is built exactly as train.py would build it (same flag parser) and
validated before anything runs; its trainable count comes from shapes only. A run with
`match_width` gets the width multiplier that matches its target (`sizing.match_width`).

    ROOT/sweep.json            the whole plan (title, references, every run and command)
    ROOT/<run>/sweep_run.json  one run: labels, overrides, expected sizes, command
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from typing import Any, Optional, Sequence

import ml_collections

import smh_jax
from smh_jax.errors import UserError
from smh_jax.experiments.sizing import Sizer
from smh_jax.experiments.sweep_plan import Reference, RunSpec, grid
from smh_jax.training import config_base


@dataclasses.dataclass
class Run:
    """One train.py invocation of the sweep, sized."""

    name: str
    config: str
    overrides: list[str]  # "key=value", applied after the config file
    labels: dict[str, Any]  # model, method, fraction, variant, seed, ...
    expected_params: int = 0  # trainable variables
    dense_params: int = 0  # the architecture at the config file's own width
    width_multiplier: float = 1.0
    width_target: Optional[int] = None  # the trainable count a width run was matched to

    def command(self, root: str, python: str, train_script: str) -> list[str]:
        return [python, train_script, f"--config={self.config}",
                f"--workdir={os.path.join(root, self.name)}",
                *(f"--config.{o}" for o in self.overrides)]


def load_config(config: str, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """The config exactly as train.py would build it (same flag parser), validated."""
    from absl import flags
    from ml_collections import config_flags

    path = config.split(":", 1)[0]
    if not os.path.isfile(path):
        raise UserError(f"--config {config!r}: no such file {path!r}")
    argv = ["sweep", f"--config={config}", *(f"--config.{o}" for o in overrides)]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                    sys_argv=argv)
    try:
        values(argv)
        loaded = values.config
    except UserError:
        raise
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, SyntaxError) as e:
        text = " ".join(str(e).split())
        raise UserError(f"--config {config!r} with overrides {list(overrides)}: {text}") from None
    config_base.validate(loaded)
    return loaded


def _labels(spec: RunSpec, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The run's labels, with model, method, fraction and seed filled in from its config."""
    compressed = config_base.smh_options(config) is not None
    width = float(config.model.width_multiplier)
    defaults = {
        "model": config.model.name,
        "method": "smh" if compressed else ("width" if width != 1.0 else "dense"),
        "fraction": (config.smh.fraction or None) if compressed else None,
        "variant": "",
        "seed": config.seed,
    }
    return {**defaults, **spec.labels}


def expand(runs: Sequence[RunSpec], sets: Sequence[str] = (),
           sizer: Optional[Sizer] = None) -> list[Run]:
    """Every run validated and sized before anything runs; `sets` go before each run's
    own overrides."""
    sizer = sizer or Sizer()
    out: list[Run] = []
    seen: set[str] = set()
    for spec in runs:
        if spec.name in seen:
            raise UserError(f"two runs are both named {spec.name!r} (the same model twice, or "
                            "a variant named like a method); give distinct names")
        seen.add(spec.name)
        base = load_config(spec.config, sets)
        overrides = [*sets, *spec.overrides]
        target = None
        if spec.match_width is not None:
            target = sizer.trainable(load_config(spec.config, [*sets, *spec.match_width]))
            width, _ = sizer.match_width(load_config(spec.config, overrides), target)
            overrides.append(f"model.width_multiplier={width!r}")
        config = load_config(spec.config, overrides)
        if target is not None and config_base.smh_options(config) is not None:
            raise UserError(f"run {spec.name!r}: match_width needs a dense run; its overrides "
                            "leave SMH on (add smh.fraction=0)")
        out.append(Run(
            name=spec.name, config=spec.config, overrides=overrides,
            labels=_labels(spec, config), expected_params=sizer.trainable(config),
            dense_params=sizer.params_at_width(base, base.model.width_multiplier),
            width_multiplier=float(config.model.width_multiplier), width_target=target))
    return out


def format_plan(runs: Sequence[Run]) -> str:
    lines = [f"{'run':<28} {'method':<8} {'fraction':>8} {'trainable':>10} {'dense':>10} "
             f"{'width':>9}  matched to"]
    for r in runs:
        fraction = r.labels.get("fraction")
        frac = "-" if fraction is None else f"{fraction:g}"
        target = f"{r.width_target:,}" if r.width_target else ""
        lines.append(f"{r.name:<28} {r.labels.get('method', '-'):<8} {frac:>8} "
                     f"{r.expected_params:>10,} {r.dense_params:>10,} "
                     f"{r.width_multiplier:>9.4g}  {target}")
    return "\n".join(lines)


def write_json(path: str, obj: Any) -> None:
    """Written whole or not at all (a reader never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_plan(root: str, runs: Sequence[Run], commands: Sequence[list[str]], title: str = "",
               references: Sequence[Reference] = (), preset: str = "") -> None:
    """ROOT/sweep.json (the whole plan) and ROOT/<run>/sweep_run.json (one run each)."""
    os.makedirs(root, exist_ok=True)
    records = []
    for run, command in zip(runs, commands, strict=True):
        record = {**dataclasses.asdict(run), "command": shlex.join(command)}
        records.append(record)
        os.makedirs(os.path.join(root, run.name), exist_ok=True)
        write_json(os.path.join(root, run.name, "sweep_run.json"), record)
    write_json(os.path.join(root, "sweep.json"), {
        "preset": preset, "title": title, "cwd": os.getcwd(),
        "references": [dataclasses.asdict(r) for r in references], "runs": records,
        "smh_jax_version": smh_jax.__version__})


def grid_runs(configs: Sequence[str], sets: Sequence[str], fractions: Sequence[float],
              width_fractions: Sequence[float], seeds: Sequence[int], dense: bool,
              variants: Sequence[tuple[str, Sequence[str]]]) -> list[RunSpec]:
    """`sweep_plan.grid` of every config file (its model name read from the config)."""
    if not configs:
        raise UserError("no --config given (and no --preset); nothing to sweep")
    if not seeds:
        raise UserError("--seeds is empty; give at least one seed, e.g. --seeds=0")
    runs: list[RunSpec] = []
    for config in configs:
        base = load_config(config, sets)
        runs += grid(config, base.model.name, bool(base.smh.target_params), fractions,
                     width_fractions, seeds, dense, variants)
    return runs
