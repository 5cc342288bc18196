"""Sweeps of train.py: SMH at several fractions, width-multiplier baselines at matched
sizes, the dense model and named variants; run here (K at once) or written out as a
Slurm job array; then collected into a CSV, a Markdown table and the accuracy-vs-size
plot of the paper's Figure 6.

    # The CIFAR-10 ResNet-32 reproduction (docs/results/cifar10_resnet32.md), 6 at once:
    python scripts/sweep.py --preset=cifar10_resnet32 --root=/tmp/r32 --parallel=6
    # Any sweep from flags; a variant is a name plus extra config overrides:
    python scripts/sweep.py --config=configs/resnet20_cifar10_smh.py:fast \
        --fractions=0.25,0.1 --width_fractions=0.25 --seeds=0,1 \
        --variant=hash2=smh.pool=hash,smh.num_hashes=2,smh.fraction=0.1 --root=/tmp/r20
    # A job array for a cluster instead of running here, then collect when it is done:
    python scripts/sweep.py --preset=cifar10_resnet32 --root=/shared/r32 --emit=slurm > r32.sbatch
    python scripts/sweep.py --root=/tmp/r32 --collect_only --out_dir=docs/results \
        --name=cifar10_resnet32

Every run is `python train.py --config=CONFIG --workdir=ROOT/<run> --config.<k>=<v>...`,
logged to ROOT/<run>/log.txt. A run whose summary.json exists is skipped, so rerunning
the same command resumes the sweep (and train.py resumes an interrupted run from its
checkpoints). ROOT/sweep.json records the expanded plan; ROOT/<run>/sweep_run.json what
each run is (method, fraction, variant) for the collector.

Width baselines are matched to the SMH run of the same fraction: the width multiplier
(a multiple of 1/1024) whose trainable count, from `jax.eval_shape`, is closest to the
SMH model's trainable count (factors + scales + BatchNorm).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from smh_jax.errors import UserError  # noqa: E402  (light: no JAX import)

TRAIN_PY = os.path.join(REPO, "train.py")
CSV_COLUMNS = (
    "run", "model", "method", "variant", "pool", "fraction", "achieved_fraction",
    "trainable_params", "dense_params", "width_multiplier", "seed", "accuracy", "top5",
    "epochs", "steps", "batch_size", "wall_seconds", "device", "status",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# ----------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published point, drawn as a labelled marker (never measured here)."""

    label: str
    params: float
    accuracy: float  # percent
    marker: str = "*"  # "^": the paper gives a lower bound ("above 90%")


def _resnet32_targets(groups: dict[tuple, dict]) -> list[tuple[str, str, str]]:
    """Issue 5's targets, from the seed means: (target, measured, met)."""
    def acc(method: str, fraction: Optional[float]) -> Optional[float]:
        for (model, m, variant, f), g in groups.items():
            if model == "resnet32" and m == method and not variant and (
                    fraction is None or (f is not None and abs(f - fraction) < 1e-9)):
                return g["accuracy"]
        return None

    def fmt(a: Optional[float]) -> str:
        return "-" if a is None else f"{100 * a:.2f}%"

    def verdict(ok: Optional[bool]) -> str:
        return "not run" if ok is None else ("met" if ok else "MISSED")

    dense = acc("dense", None)
    out = [("dense >= 92.0%", fmt(dense), verdict(None if dense is None else dense >= 0.92))]
    s25 = acc("smh", 0.25)
    ok = None if s25 is None or dense is None else s25 >= dense - 0.003
    out.append(("SMH 25% >= dense - 0.3 points", f"{fmt(s25)} vs {fmt(dense)}", verdict(ok)))
    s10 = acc("smh", 0.1)
    out.append(("SMH 10% >= 90.0%", fmt(s10), verdict(None if s10 is None else s10 >= 0.90)))
    for f in (0.25, 0.1):
        s, w = acc("smh", f), acc("width", f)
        ok = None if s is None or w is None else s > w
        out.append((f"SMH {100 * f:g}% > width multiplier at the same size",
                    f"{fmt(s)} vs {fmt(w)}", verdict(ok)))
    return out


def _scale_targets(groups: dict[tuple, dict]) -> list[tuple[str, str, str]]:
    """Issue 2's claims about the per-layer scale, from the seed means."""
    def get(method: str, variant: str, fraction: Optional[float]) -> Optional[dict]:
        for (_, m, v, f), g in groups.items():
            if m == method and v == variant and (fraction is None or (
                    f is not None and abs(f - fraction) < 1e-9)):
                return g
        return None

    def acc(group: Optional[dict]) -> str:
        return "-" if group is None else f"{100 * group['accuracy']:.2f}%"

    out = []
    for f in (0.25, 0.1):
        norm, frozen = get("smh", "", f), get("smh", f"frozen{round(100 * f)}", f)
        direct = get("smh", f"direct{round(100 * f)}", f)
        ok = None if norm is None or frozen is None else norm["accuracy"] >= frozen["accuracy"]
        out.append((f"{100 * f:g}%: learned scale (norm) >= frozen scale",
                    f"{acc(norm)} vs {acc(frozen)}",
                    "not run" if ok is None else ("met" if ok else "MISSED")))
        out.append((f"{100 * f:g}%: direct learned scale (the plain variant) diverges",
                    acc(direct), "not run" if direct is None else (
                        "diverged" if direct["accuracy"] < 0.2 else "did not diverge")))
    return out


def _table1_targets(groups: dict[tuple, dict]) -> list[tuple[str, str, str]]:
    """The paper's Table 1 claim at equal size: SMH above unstructured hashing (and Kronecker)."""
    accuracy = {variant: g["accuracy"] for (_, m, variant, _), g in groups.items()
                if m == "smh"}

    def fmt(a: Optional[float]) -> str:
        return "-" if a is None else f"{100 * a:.2f}%"

    smh = accuracy.get("")
    out = []
    for variant, label in (("hash1", "hash K = 1"), ("hash2", "hash K = 2"),
                           ("hash10", "hash K = 10"), ("kronecker", "Kronecker")):
        other = accuracy.get(variant)
        ok = None if smh is None or other is None else smh >= other
        out.append((f"SMH >= {label} at the same size", f"{fmt(smh)} vs {fmt(other)}",
                    "not run" if ok is None else ("met" if ok else "MISSED")))
    return out


@dataclasses.dataclass(frozen=True)
class Preset:
    configs: tuple[str, ...]
    fractions: tuple[float, ...]
    width_fractions: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    dense: bool = True
    sets: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    title: str = ""
    references: tuple[Reference, ...] = ()
    targets: Optional[Callable[[dict], list]] = None


PRESETS = {
    # Issue 5 / docs/results/cifar10_resnet32.md: the `fast` one-cycle recipe at 50 epochs
    # for every run (6 runs share one H200 within one 10-minute command), CIFAR-10 from
    # the npz copy, an eval every 10 epochs so a stopped run still reports something.
    "cifar10_resnet32": Preset(
        configs=("configs/resnet32_cifar10_smh.py:fast,epochs=50,"
                 "npz=data_local/cifar10_jpeg.npz",),
        fractions=(0.25, 0.1, 0.05),
        width_fractions=(0.25, 0.1),
        sets=("eval_every_steps=970",),
        title="CIFAR-10 ResNet-32: accuracy vs trainable variables",
        references=(
            Reference("paper: dense ResNet-32, 92.49% (He et al.)", 0.46e6, 92.49, "D"),
            Reference("paper: SMH 25% (~115K), no loss vs dense", 115e3, 92.49, "*"),
            Reference("paper: SMH 10% (46-50K), above 90%", 48e3, 90.0, "^"),
        ),
        targets=_resnet32_targets,
    ),
    # Issue 2 / docs/results/scale_stability.md: the setting where the plain learnable
    # scale diverged on the H200 (batch 512, Nesterov SGD, one-cycle peak LR 0.4, 30
    # epochs): the default (norm-parameterized learned scales) against frozen scales and
    # the plain (direct) learned scales, at 25% and 10%, and the dense model. Non-finite
    # steps are skipped and counted (nonfinite=skip) so the divergent runs still report.
    "cifar10_resnet32_scale": Preset(
        configs=("configs/resnet32_cifar10_smh.py:fast,epochs=30,"
                 "npz=data_local/cifar10_jpeg.npz",),
        fractions=(0.25, 0.1),
        width_fractions=(),
        sets=("nonfinite=skip",),
        variants=("frozen25=smh.fraction=0.25,smh.learn_scale=False",
                  "frozen10=smh.fraction=0.1,smh.learn_scale=False",
                  "direct25=smh.fraction=0.25,smh.scale_parameterization=direct",
                  "direct10=smh.fraction=0.1,smh.scale_parameterization=direct"),
        title="CIFAR-10 ResNet-32: per-layer scale parameterization",
        targets=_scale_targets,
    ),
    # Issue 6 / docs/results/benchmark.md: the paper's Table 1 comparison at 10% of the
    # hashed weights: SMH (product pool) vs unstructured hashing with K = 1, 2, 10 hashes
    # and the Kronecker pool, one recipe (`fast`, 40 epochs: 5 runs share one H200, hash
    # K = 10 is the slowest), no dense run.
    "cifar10_resnet32_table1": Preset(
        configs=("configs/resnet32_cifar10_smh.py:fast,epochs=40,"
                 "npz=data_local/cifar10_jpeg.npz",),
        fractions=(0.1,),
        width_fractions=(),
        dense=False,
        sets=("eval_every_steps=970",),
        variants=("kronecker=smh.pool=kronecker,smh.fraction=0.1",
                  "hash1=smh.pool=hash,smh.num_hashes=1,smh.fraction=0.1",
                  "hash2=smh.pool=hash,smh.num_hashes=2,smh.fraction=0.1",
                  "hash10=smh.pool=hash,smh.num_hashes=10,smh.fraction=0.1"),
        title="CIFAR-10 ResNet-32 at 10%: SMH vs hashing vs Kronecker",
        targets=_table1_targets,
    ),
}


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Run:
    """One train.py invocation of the sweep."""

    name: str
    model: str
    method: str  # dense | smh | width | variant
    fraction: Optional[float]  # SMH fraction, or the size a width run matches
    variant: str
    seed: int
    config: str
    overrides: list[str]  # "key=value", applied after the config file
    expected_params: int = 0
    dense_params: int = 0
    width_multiplier: float = 1.0
    width_target: Optional[int] = None  # the trainable count a width run was matched to

    def command(self, root: str, python: str) -> list[str]:
        return [python, TRAIN_PY, f"--config={self.config}",
                f"--workdir={os.path.join(root, self.name)}",
                *(f"--config.{o}" for o in self.overrides)]


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.4g}"


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise UserError(f"{what}: {item!r} is not a number; give a comma-separated "
                            "list like 0.25,0.1") from None
        if not 0.0 < value <= 1.0:
            raise UserError(f"{what}: {value!r} is outside (0, 1]")
        out.append(value)
    return tuple(out)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a comma-separated list of integers") from None


def _split_top_level(text: str) -> list[str]:
    """Splits at commas outside brackets/quotes, so tuple values like (a,b) survive."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_override(text: str, what: str) -> str:
    """'smh.fraction=0.1' (also '--config.smh.fraction=0.1') -> 'smh.fraction=0.1'."""
    text = text.strip()
    for prefix in ("--config.", "config."):
        if text.startswith(prefix):
            text = text[len(prefix):]
    key, sep, value = text.partition("=")
    if not sep or not _KEY_RE.match(key):
        raise UserError(f"{what}: {text!r} is not KEY=VALUE with a config key like "
                        "smh.fraction=0.1")
    return f"{key}={value}"


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'hash2=smh.pool=hash,smh.num_hashes=2' -> ('hash2', [...])."""
    name, sep, rest = text.partition("=")
    if not sep or not _NAME_RE.match(name) or not rest.strip():
        raise UserError(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE...] with a "
                        "name of letters, digits, '_', '.', '-'")
    return name, [parse_override(o, f"--variant {name}") for o in _split_top_level(rest)]


def load_config(config: str, overrides: Sequence[str]) -> Any:
    """The config exactly as train.py would build it (same flag parser), validated."""
    from absl import flags
    from ml_collections import config_flags

    from smh_jax.training import config_base

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


class Sizes:
    """Trainable-parameter counts from shapes only (`jax.eval_shape`, no compute)."""

    def __init__(self):
        self._info: dict[str, Any] = {}
        self._trainable: dict[str, int] = {}

    def info(self, config: Any) -> Any:
        from smh_jax import data as data_lib

        key = json.dumps(config.dataset.to_dict(), sort_keys=True, default=str)
        if key not in self._info:
            self._info[key] = data_lib.get_info(config.dataset)
        return self._info[key]

    def trainable(self, config: Any) -> int:
        """Trainable variables of the run `config` describes (SMH: factors, scales, BN)."""
        key = json.loads(config.to_json_best_effort(sort_keys=True))
        key.pop("seed", None)  # seeds share a count
        key = json.dumps(key, sort_keys=True)
        if key not in self._trainable:
            self._trainable[key] = self._count_trainable(config)
        return self._trainable[key]

    def _count_trainable(self, config: Any) -> int:
        import jax

        import smh_jax
        from smh_jax.training import trainer

        info = self.info(config)
        num_classes = trainer.num_classes_of(config, info)
        bundle = trainer.create_model(config, num_classes)
        shape = trainer.input_shape(info)
        params = jax.eval_shape(
            lambda r: trainer.init_variables(bundle, shape, r)["params"], jax.random.key(0))
        if bundle.compressed:
            return int(smh_jax.accounting(smh_jax.smh_params_of(params))["trainable"])
        return trainer.count_params(params)

    def width_count(self, config: Any, width: float) -> int:
        import jax
        import jax.numpy as jnp

        from smh_jax import models
        from smh_jax.training import trainer

        info = self.info(config)
        model = models.create(config.model.name,
                              num_classes=trainer.num_classes_of(config, info),
                              width_multiplier=width)
        shape = trainer.input_shape(info)
        params = jax.eval_shape(
            lambda r: model.init({"params": r, "dropout": r}, jnp.zeros(shape), train=False),
            jax.random.key(0))["params"]
        return trainer.count_params(params)

    def match_width(self, config: Any, target: int, steps: int = 1024) -> tuple[float, int]:
        """The width (a multiple of 1/steps) whose count is closest to `target`.

        Counts only grow with the width (channels are rounded per layer), so a bisection
        over the grid finds the first width reaching the target; it or its predecessor
        is the closest.
        """
        cache: dict[int, int] = {}

        def count(k: int) -> int:
            if k not in cache:
                cache[k] = self.width_count(config, k / steps)
            return cache[k]

        top = 4 * steps
        # Counts grow about quadratically with the width: bracket that guess first.
        guess = round(steps * math.sqrt(target / count(steps)))
        lo = min(max(1, guess - steps // 32), top)
        hi = min(max(1, guess + steps // 32), top)
        if count(lo) >= target:
            lo = 1
        if count(hi) < target:
            hi = top
            if count(hi) < target:
                raise UserError(f"width matching: {config.model.name} needs a width above "
                                f"{top / steps} to reach {target:,} parameters")
        while lo < hi:
            mid = (lo + hi) // 2
            if count(mid) >= target:
                hi = mid
            else:
                lo = mid + 1
        best = min((k for k in (lo - 1, lo) if k >= 1), key=lambda k: abs(count(k) - target))
        return best / steps, count(best)


@dataclasses.dataclass
class Spec:
    configs: tuple[str, ...]
    fractions: tuple[float, ...]
    width_fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    dense: bool
    sets: tuple[str, ...]
    variants: tuple[tuple[str, tuple[str, ...]], ...]
    title: str = ""
    references: tuple[Reference, ...] = ()
    preset: str = ""


def expand(spec: Spec, sizes: Optional[Sizes] = None) -> list[Run]:
    """All runs of the sweep, in order (configs x [dense, SMH, width, variants] x seeds),
    each validated and sized before anything runs."""
    sizes = sizes or Sizes()
    if not spec.configs:
        raise UserError("no --config given (and no --preset); nothing to sweep")
    if not spec.seeds:
        raise UserError("--seeds is empty; give at least one seed, e.g. --seeds=0")
    runs: list[Run] = []
    for config_str in spec.configs:
        base = load_config(config_str, spec.sets)
        model = base.model.name
        # The sweep's dense reference: the architecture at the config's own width.
        dense = sizes.width_count(base, base.model.width_multiplier)
        # Clearing whichever size field the config file sets makes a run dense.
        clear = ["smh.fraction=0"] + (["smh.target_params=0"] if base.smh.target_params else [])
        smh_set = (["smh.target_params=0"] if base.smh.target_params else [])
        groups: list[tuple[str, str, Optional[float], list[str]]] = []
        if spec.dense:
            groups.append((f"{model}_dense", "dense", None, list(clear)))
        for f in spec.fractions:
            groups.append((f"{model}_smh{_pct(f)}", "smh", f, [*smh_set, f"smh.fraction={f}"]))
        for f in spec.width_fractions:
            groups.append((f"{model}_width{_pct(f)}", "width", f, []))
        for name, overrides in spec.variants:
            groups.append((f"{model}_{name}", "variant", None, list(overrides)))
        for prefix, method, fraction, overrides in groups:
            width, target = 1.0, None
            if method == "width":
                smh_config = load_config(config_str, [*spec.sets, *smh_set,
                                                      f"smh.fraction={fraction}"])
                target = sizes.trainable(smh_config)
                width, _ = sizes.match_width(base, target)
                overrides = [*clear, f"model.width_multiplier={width!r}"]
            for seed in spec.seeds:
                all_overrides = [*spec.sets, *overrides, f"seed={seed}"]
                config = load_config(config_str, all_overrides)
                trainable = sizes.trainable(config)
                if method == "variant":
                    fraction = config.smh.fraction or None
                runs.append(Run(
                    name=f"{prefix}_s{seed}", model=model, method=method, fraction=fraction,
                    variant=prefix[len(model) + 1:] if method == "variant" else "",
                    seed=seed, config=config_str, overrides=all_overrides,
                    expected_params=trainable, dense_params=dense,
                    width_multiplier=float(config.model.width_multiplier),
                    width_target=target))
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise UserError(f"two runs are both named {run.name!r} (the same model twice, or "
                            "a variant named like a method); give distinct names")
        seen.add(run.name)
    return runs


def format_plan(runs: Sequence[Run]) -> str:
    lines = [f"{'run':<28} {'method':<8} {'fraction':>8} {'trainable':>10} {'dense':>10} "
             f"{'width':>9}  matched to"]
    for r in runs:
        frac = "-" if r.fraction is None else f"{r.fraction:g}"
        target = f"{r.width_target:,}" if r.width_target else ""
        lines.append(f"{r.name:<28} {r.method:<8} {frac:>8} {r.expected_params:>10,} "
                     f"{r.dense_params:>10,} {r.width_multiplier:>9.4g}  {target}")
    return "\n".join(lines)


def write_plan(root: str, spec: Spec, runs: Sequence[Run], python: str) -> None:
    """ROOT/sweep.json (the whole plan) and ROOT/<run>/sweep_run.json (one run each)."""
    os.makedirs(root, exist_ok=True)
    records = []
    for run in runs:
        record = {**dataclasses.asdict(run), "command": shlex.join(run.command(root, python))}
        records.append(record)
        os.makedirs(os.path.join(root, run.name), exist_ok=True)
        _write_json(os.path.join(root, run.name, "sweep_run.json"), record)
    _write_json(os.path.join(root, "sweep.json"), {
        "preset": spec.preset, "title": spec.title, "cwd": os.getcwd(),
        "references": [dataclasses.asdict(r) for r in spec.references], "runs": records})


def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- execution


def child_env(base_env: dict[str, str], parallel: int,
              mem_fraction: Optional[float]) -> dict[str, str]:
    """The environment of every run: the repo importable; with several runs on one GPU,
    no preallocation and a memory cap each (XLA's default grabs 75% for one process)."""
    env = dict(base_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH", "")]))
    if parallel > 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if mem_fraction is None and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env:
            mem_fraction = round(0.75 / parallel, 3)
        if mem_fraction is not None:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(mem_fraction)
    return env


class _Stop(Exception):
    pass


def execute(runs: Sequence[Run], root: str, python: str, parallel: int, env: dict[str, str],
            time_limit: float = 0.0, grace: float = 90.0, poll: float = 0.5) -> dict[str, str]:
    """Runs what is not done yet, `parallel` at a time; returns run name -> outcome.

    At `time_limit` seconds (0: none) or on SIGTERM/SIGINT the running runs get SIGTERM
    (train.py then checkpoints and exits), then SIGKILL after `grace` seconds.
    """
    outcome: dict[str, str] = {}
    pending = []
    for run in runs:
        if os.path.exists(os.path.join(root, run.name, "summary.json")):
            outcome[run.name] = "done before"
            print(f"skip {run.name}: summary.json exists", flush=True)
        else:
            pending.append(run)
    running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    start = time.time()
    stop_reason = ""

    def on_signal(signum, frame):
        del frame
        raise _Stop(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        try:
            total = len(pending)
            started = 0
            while pending or running:
                while pending and len(running) < parallel:
                    run = pending.pop(0)
                    started += 1
                    workdir = os.path.join(root, run.name)
                    os.makedirs(workdir, exist_ok=True)
                    log = open(os.path.join(workdir, "log.txt"), "a", encoding="utf-8")
                    cmd = run.command(root, python)
                    log.write(f"# {datetime.datetime.now().isoformat(timespec='seconds')} "
                              f"{shlex.join(cmd)}\n")
                    log.flush()
                    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL)
                    running[run.name] = (proc, log, time.time())
                    print(f"[{started}/{total}] start {run.name} (pid {proc.pid})", flush=True)
                for name, (proc, log, t0) in list(running.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    log.close()
                    del running[name]
                    outcome[name] = _report(root, name, rc, time.time() - t0)
                if time_limit and time.time() - start > time_limit:
                    raise _Stop(f"time limit of {time_limit:g} s")
                time.sleep(poll)
        except _Stop as e:
            stop_reason = str(e)
        if stop_reason:
            print(f"stopping: {stop_reason}; {len(running)} running runs get SIGTERM, "
                  f"{len(pending)} not started", flush=True)
            for proc, _, _ in running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + grace
            for name, (proc, log, t0) in running.items():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
                outcome[name] = _report(root, name, proc.returncode, time.time() - t0,
                                        stopped=True)
            for run in pending:
                outcome[run.name] = "not started"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome


def _report(root: str, name: str, rc: int, seconds: float, stopped: bool = False) -> str:
    summary_path = os.path.join(root, name, "summary.json")
    if rc == 0 and os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            accuracy = json.load(f)["accuracy"]
        text = f"done in {seconds:.0f} s, accuracy {100 * accuracy:.2f}%"
    elif stopped:
        text = (f"stopped after {seconds:.0f} s (exit {rc}; 143: checkpointed, rerun to "
                "resume)")
    else:
        text = f"FAILED (exit {rc}) after {seconds:.0f} s: {_last_line(root, name)}"
    print(f"{name}: {text}", flush=True)
    return text


def _last_line(root: str, name: str) -> str:
    try:
        with open(os.path.join(root, name, "log.txt"), encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"


# ----------------------------------------------------------------------------- emit


def emit_commands(runs: Sequence[Run], root: str, python: str) -> str:
    return "".join(shlex.join(r.command(root, python)) + "\n" for r in runs)


def emit_slurm(runs: Sequence[Run], root: str, python: str, parallel: int,
               options: Sequence[str]) -> str:
    """An sbatch job-array script: task i runs run i unless its summary.json exists."""
    root = os.path.abspath(root)
    array = f"0-{len(runs) - 1}" + (f"%{parallel}" if parallel > 1 else "")
    lines = [
        "#!/bin/bash",
        f"# {len(runs)} runs of train.py, written by scripts/sweep.py "
        f"on {datetime.date.today().isoformat()}.",
        "#   sbatch THIS_FILE      (a task whose summary.json exists exits at once)",
        f"#   python scripts/sweep.py --root={shlex.quote(root)} --collect_only   (afterwards)",
        "#SBATCH --job-name=smh_sweep",
        f"#SBATCH --array={array}",
        f"#SBATCH --output={root}/slurm-%A_%a.out",
        *(f"#SBATCH {o}" for o in (options or ("--gres=gpu:1",))),
        "set -euo pipefail",
        f"cd {shlex.quote(os.getcwd())}",
        f"export PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for i, run in enumerate(runs):
        lines.append(f"  {i}) RUN={run.name}; CMD=({shlex.join(run.command(root, python))}) ;;")
    lines += [
        '  *) echo "error: no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        f'DIR={shlex.quote(root)}/"$RUN"',
        'mkdir -p "$DIR"',
        'if [[ -f "$DIR/summary.json" ]]; then echo "$RUN: done before, skipped"; exit 0; fi',
        'echo "# $(date -Is) ${CMD[*]}" >> "$DIR/log.txt"',
        '"${CMD[@]}" >> "$DIR/log.txt" 2>&1',
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- collect


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _last_eval(workdir: str) -> tuple[Optional[float], Optional[int]]:
    accuracy, step = None, None
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                step = record.get("step", step)
                if record.get("split") == "eval":
                    accuracy = record.get("accuracy")
    except OSError:
        pass
    return accuracy, step


def collect(root: str) -> list[dict[str, Any]]:
    """One row per run: finished runs from summary.json, others from their last eval."""
    plan = _read_json(os.path.join(root, "sweep.json"))
    if plan is not None:
        names = [r["name"] for r in plan["runs"]]
    elif os.path.isdir(root):
        names = sorted(d for d in os.listdir(root)
                       if os.path.isfile(os.path.join(root, d, "summary.json"))
                       or os.path.isfile(os.path.join(root, d, "sweep_run.json")))
    else:
        raise UserError(f"--root {root!r}: no such directory")
    rows = []
    for name in names:
        workdir = os.path.join(root, name)
        meta = _read_json(os.path.join(workdir, "sweep_run.json")) or {}
        summary = _read_json(os.path.join(workdir, "summary.json"))
        row: dict[str, Any] = {c: None for c in CSV_COLUMNS}
        row.update(run=name, model=meta.get("model"), variant=meta.get("variant", ""),
                   seed=meta.get("seed"), fraction=meta.get("fraction"),
                   trainable_params=meta.get("expected_params"),
                   dense_params=meta.get("dense_params"),
                   width_multiplier=meta.get("width_multiplier"))
        method = meta.get("method")
        if summary is not None:
            for key in CSV_COLUMNS:
                # The sweep's own labels win: fraction (a width run's matched size) and
                # dense_params (one reference for every run of a model).
                if key in summary and not (key in ("fraction", "method") or (
                        key == "dense_params" and row[key])):
                    row[key] = summary[key]
            row["status"] = "complete"
            if method in (None, "variant"):
                method = summary.get("method")
            if row["fraction"] is None:
                row["fraction"] = summary.get("fraction")
        else:
            row["accuracy"], row["steps"] = _last_eval(workdir)
            if row["steps"] is not None:
                row["status"] = "incomplete"  # trained some steps
            elif os.path.exists(os.path.join(workdir, "log.txt")):
                row["status"] = "stopped"  # started, never reached a logged step
            else:
                row["status"] = "not run"
            if method == "variant":
                method = "smh" if row["fraction"] else None
        row["method"] = method
        if method == "dense" and row["fraction"] is None:
            row["fraction"] = 1.0
        if row["variant"] is None:
            row["variant"] = ""
        if row["trainable_params"] and row["dense_params"]:
            row["achieved_fraction"] = row["trainable_params"] / row["dense_params"]
        rows.append(row)
    if not rows:
        raise UserError(f"--root {root!r} holds no runs (no sweep.json, no */summary.json)")
    return rows


def group_rows(rows: Sequence[dict]) -> dict[tuple, dict]:
    """Seed averages of the complete runs: (model, method, variant, fraction) -> stats."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] != "complete" or row["accuracy"] is None:
            continue
        key = (row["model"], row["method"], row["variant"],
               None if row["method"] == "dense" else row["fraction"])
        groups.setdefault(key, []).append(row)
    out = {}
    for key, members in groups.items():
        accs = [m["accuracy"] for m in members]
        out[key] = {
            "n": len(members), "accuracy": sum(accs) / len(accs), "min": min(accs),
            "max": max(accs),
            "trainable_params": sum(m["trainable_params"] for m in members) / len(members),
            "wall_seconds": sum(m["wall_seconds"] or 0 for m in members) / len(members),
        }
    return out


def write_csv(rows: Sequence[dict], path: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})


def _cell(value: Any, kind: str = "") -> str:
    if value is None or value == "":
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "int":
        return f"{int(round(value)):,}"
    if kind == "float":
        return f"{value:.4g}"
    if kind == "s":
        return f"{value:.0f}"
    return str(value)


def markdown(rows: Sequence[dict], groups: dict[tuple, dict],
             targets: Optional[Callable[[dict], list]] = None) -> str:
    lines = ["| run | method | fraction | trainable | width mult. | accuracy (%) | epochs "
             "| wall (s) | device | status |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        method = r["method"] or "-"
        if r["variant"]:
            method = f"{method} ({r['variant']})"
        status = r["status"]
        if status == "incomplete":
            status = f"incomplete (step {r['steps']})"
        lines.append(
            f"| {r['run']} | {method} | {_cell(r['fraction'], 'float')} "
            f"| {_cell(r['trainable_params'], 'int')} | {_cell(r['width_multiplier'], 'float')} "
            f"| {_cell(r['accuracy'], 'pct')} | {_cell(r['epochs'], 'float')} "
            f"| {_cell(r['wall_seconds'], 's')} | {_cell(r['device'])} | {status} |")
    if any(g["n"] > 1 for g in groups.values()):
        lines += ["", "Seed averages (min - max):", "",
                  "| model | method | fraction | trainable | seeds | accuracy (%) |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for (model, method, variant, fraction), g in sorted(
                groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], -kv[1]["n"])):
            label = f"{method} ({variant})" if variant else method
            lines.append(
                f"| {model} | {label} | {_cell(fraction, 'float')} "
                f"| {_cell(g['trainable_params'], 'int')} | {g['n']} "
                f"| {100 * g['accuracy']:.2f} ({100 * g['min']:.2f} - {100 * g['max']:.2f}) |")
    if targets is not None:
        lines += ["", "| target | measured | verdict |", "| --- | --- | --- |"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(groups)]
    incomplete = [r["run"] for r in rows if r["status"] != "complete"]
    if incomplete:
        lines += ["", f"Not complete ({len(incomplete)}): {', '.join(incomplete)}; their "
                  "accuracy, if any, is the last periodic evaluation."]
    return "\n".join(lines) + "\n"


def plot(groups: dict[tuple, dict], references: Sequence[Reference], title: str,
         paths: Sequence[str]) -> None:
    """Accuracy vs trainable variables (log x), one curve per method, as Figure 6."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(7.5, 5))
    models = sorted({k[0] for k in groups})
    style = {"smh": ("o-", "tab:blue", "SMH"), "width": ("s--", "tab:orange", "width multiplier"),
             "dense": ("D", "black", "dense")}
    series: dict[tuple, list] = {}
    for key, g in groups.items():
        model, method, variant, _ = key
        series.setdefault((model, method, variant), []).append(g)
    extra_colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][2:] * 4)
    for (model, method, variant), members in sorted(series.items(), key=str):
        members.sort(key=lambda g: g["trainable_params"])
        x = [g["trainable_params"] for g in members]
        y = [100 * g["accuracy"] for g in members]
        err = [[100 * (g["accuracy"] - g["min"]) for g in members],
               [100 * (g["max"] - g["accuracy"]) for g in members]]
        fmt, color, label = style.get(method, ("^", None, method))
        if variant:
            fmt, color, label = "^", next(extra_colors), f"{method} ({variant})"
        if len(models) > 1:
            label = f"{model} {label}"
        ax.errorbar(x, y, yerr=err if any(max(e) > 0 for e in err) else None, fmt=fmt,
                    color=color, label=label, capsize=3, markersize=6)
        if method == "dense" and not variant:
            ax.axhline(y[0], color=color, linestyle=":", linewidth=0.8)
    for ref in references:
        ax.scatter([ref.params], [ref.accuracy], marker=ref.marker, s=110, facecolors="none",
                   edgecolors="crimson", linewidths=1.4, label=ref.label, zorder=5)
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [m * 10**e for e in range(2, 10) for m in (1, 2, 3, 5) if low <= m * 10**e <= high]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}K"))
    ax.set_xlabel("trainable variables")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "accuracy vs trainable variables")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)


def write_results(root: str, out_dir: str, name: str, references: Sequence[Reference] = (),
                  title: str = "", targets: Optional[Callable] = None) -> dict[str, str]:
    """CSV, Markdown, PNG and SVG of everything under ROOT; returns their paths."""
    rows = collect(root)
    plan = _read_json(os.path.join(root, "sweep.json")) or {}
    if not references and plan.get("references"):
        references = [Reference(**r) for r in plan["references"]]
    title = title or plan.get("title", "")
    if targets is None and plan.get("preset") in PRESETS:
        targets = PRESETS[plan["preset"]].targets
    groups = group_rows(rows)
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"{name}.{ext}") for ext in ("csv", "md", "png", "svg")}
    write_csv(rows, paths["csv"])
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown(rows, groups, targets))
    plot(groups, references, title, [paths["png"], paths["svg"]])
    return paths


# ----------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every entry point here
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="one workdir per run under ROOT")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named sweep; flags add to it")
    p.add_argument("--config", action="append", help="config file[:arg]; repeat for several")
    p.add_argument("--fractions", help="SMH fractions, e.g. 0.25,0.1,0.05")
    p.add_argument("--width_fractions", help="width baselines matched to SMH at these fractions")
    p.add_argument("--seeds", help="e.g. 0,1,2 (default 0)")
    p.add_argument("--dense", action=argparse.BooleanOptionalAction, default=None,
                   help="include the dense run (default: yes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every run, e.g. num_epochs=30")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,...]",
                   help="an extra named run with these overrides")
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
    p.add_argument("--out_dir", help="where NAME.csv/.md/.png/.svg go (default ROOT)")
    p.add_argument("--name", default="results", help="file name stem of the results")
    p.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    return p


def make_spec(args: argparse.Namespace) -> Spec:
    preset = PRESETS[args.preset] if args.preset else None
    if args.parallel < 1:
        raise UserError(f"--parallel {args.parallel}: must be >= 1")
    if args.mem_fraction is not None and not 0 < args.mem_fraction <= 1:
        raise UserError(f"--mem_fraction {args.mem_fraction}: must be in (0, 1]")
    if args.time_limit < 0 or args.grace < 0:
        raise UserError(f"--time_limit {args.time_limit} / --grace {args.grace}: must be >= 0")

    def pick(value, parse, default):
        return parse(value) if value is not None else default

    variants = [parse_variant(v) for v in args.variant]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise UserError(f"--variant names repeat: {names}")
    return Spec(
        configs=tuple(args.config) if args.config else (preset.configs if preset else ()),
        fractions=pick(args.fractions, lambda s: parse_floats(s, "--fractions"),
                       preset.fractions if preset else ()),
        width_fractions=pick(args.width_fractions,
                             lambda s: parse_floats(s, "--width_fractions"),
                             preset.width_fractions if preset else ()),
        seeds=pick(args.seeds, lambda s: parse_ints(s, "--seeds"),
                   preset.seeds if preset else (0,)),
        dense=args.dense if args.dense is not None else (preset.dense if preset else True),
        sets=(*(preset.sets if preset else ()), *(parse_override(s, "--set") for s in args.set)),
        variants=tuple((n, tuple(o)) for n, o in [
            *(parse_variant(v) for v in (preset.variants if preset else ())), *variants]),
        title=preset.title if preset else "",
        references=preset.references if preset else (),
        preset=args.preset or "",
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    out_dir = args.out_dir or args.root
    if args.collect_only:
        preset = PRESETS.get(args.preset or "")
        paths = write_results(args.root, out_dir, args.name,
                              preset.references if preset else (),
                              preset.title if preset else "",
                              preset.targets if preset else None)
        print("\n".join(paths.values()))
        return 0
    spec = make_spec(args)
    # Sizing needs shapes only: keep this process off the accelerator (the runs need it).
    child_base = dict(os.environ)
    os.environ["JAX_PLATFORMS"] = "cpu"
    runs = expand(spec)
    print(format_plan(runs), file=sys.stderr if args.emit else sys.stdout, flush=True)
    write_plan(args.root, spec, runs, args.python)
    if args.emit == "commands":
        sys.stdout.write(emit_commands(runs, args.root, args.python))
        return 0
    if args.emit == "slurm":
        sys.stdout.write(emit_slurm(runs, args.root, args.python, args.parallel,
                                    args.slurm_option))
        return 0
    env = child_env(child_base, args.parallel, args.mem_fraction)
    outcome = execute(runs, args.root, args.python, args.parallel, env, args.time_limit,
                      args.grace)
    paths = write_results(args.root, out_dir, args.name)
    print("\n".join(paths.values()))
    failed = {n: o for n, o in outcome.items() if o != "done before" and not o.startswith("done")}
    for name, text in failed.items():
        print(f"not complete: {name}: {text}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
