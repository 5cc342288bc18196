"""Side by side: what one training step costs with SMH, its baselines and the dense model.

    python scripts/benchmark.py --preset resnet32_cifar --json out.json
    python scripts/benchmark.py --preset resnet50 --variants dense,smh,hash1 --repetitions 50
    python scripts/benchmark.py --preset resnet32_cifar --small          # CPU smoke test

Times the jitted training step (forward, backward, SGD-momentum update with batch
statistics; state buffers donated) of: the dense model; SMH (product pool); the Kronecker
pool; unstructured hashing with K = 1, 2, 10 hashes (the paper's Table 1 baselines); the
width multiplier; all at the same trainable size (the SMH run's count; the width is found
by bisection over parameter counts from `jax.eval_shape`). Also times the materialization
alone (SMH params -> dense tree, forward and forward+backward) and inference (the dense
model; the plain model on materialized weights, which must cost the same; the compressed
model, which materializes on every call). The compressed variants compute their virtual
weights in the compute dtype (`--smh_dtype compute`, i.e. `smh.dtype` = the model's dtype);
`smh_f32` is SMH with a float32 virtual matrix under bfloat16 compute, to show what that
costs.

Every measurement is compiled once (ahead of time: a shape change would raise instead of
recompiling), warmed up, then timed INTERLEAVED: each repetition runs every measurement
once, in a fresh random order, so all of them see the same machine conditions.
Reported: median, p10/p25/p75/p90, min and the samples; ratios to dense as ratio of
medians, of minima, and the median of per-repetition (paired) ratios; memory from the
compiled executable's `memory_analysis()` (arguments + outputs - aliased + temporaries,
which works on CPU and GPU) and, where the device reports it, `memory_stats()`.

The same command runs on CPU and GPU. Bad arguments print `error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # runs as `python scripts/benchmark.py` without installing
    sys.path.insert(0, ROOT)

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import smh_jax  # noqa: E402
from smh_jax import models  # noqa: E402
from smh_jax.errors import UserError  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Preset:
    """A model, its input shape and batch, and the SMH size every variant is matched to."""

    model: str
    image_size: int
    num_classes: int
    batch: int
    dtype: str  # 'auto': bfloat16 on accelerators, float32 on CPU (no fast bf16 there)
    fraction: Optional[float] = None
    target_params: Optional[int] = None


PRESETS = {
    # CIFAR-10 ResNet-32 at 10% (the paper's Table-1-style size; the fast GPU recipe's batch).
    "resnet32_cifar": Preset("resnet32", 32, 10, 512, "auto", fraction=0.1),
    # ImageNet shapes; ResNet-50 at 25% (configs/resnet50_imagenet_smh.py).
    "resnet50": Preset("resnet50", 224, 1000, 256, "bfloat16", fraction=0.25),
    "efficientnet_b0": Preset("efficientnet_b0", 224, 1000, 256, "bfloat16", fraction=0.25),
    # B4 at 380x380 compressed to B0's 5,288,548 variables (configs/efficientnet_b4_smh.py).
    "efficientnet_b4": Preset("efficientnet_b4", 380, 1000, 64, "bfloat16",
                              target_params=5_288_548),
}
DEFAULT_VARIANTS = ("dense", "smh", "kronecker", "hash1", "hash2", "hash10", "width")
EXTRAS = ("materialize", "inference")
_VARIANT_RE = re.compile(r"^(dense|smh|smh_f32|kronecker|meta|width|hash([1-9][0-9]*))$")


def variant_names(text: str) -> tuple[str, ...]:
    """Parses --variants: dense, smh, smh_f32, kronecker, meta, hashK (K >= 1), width."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise UserError(f"--variants: {text!r} names no variant")
    for name in names:
        if not _VARIANT_RE.match(name):
            raise UserError(f"--variants: {name!r} is not one of dense, smh, smh_f32, "
                            "kronecker, meta, hashK (K >= 1), width")
    if len(set(names)) != len(names):
        raise UserError(f"--variants: {text!r} lists a variant twice")
    return names


def compute_dtype(name: str, backend: str) -> str:
    if name == "auto":
        return "float32" if backend == "cpu" else "bfloat16"
    return name


# ----------------------------------------------------------------------------- models


def count_params(tree: Any) -> int:
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def abstract_params(module: Any, shape: tuple[int, ...]) -> Any:
    """Parameter shapes of `module` for inputs of `shape` (no compute)."""
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    return jax.eval_shape(
        lambda: module.init(rngs, jnp.zeros(shape, jnp.float32), train=False))["params"]


def init_fn(module: Any, shape: tuple[int, ...]) -> Callable:
    """Jitted `module.init` on zero inputs of `shape`, taking the key."""
    return jax.jit(lambda r: module.init({"params": r, "dropout": r},
                                         jnp.zeros(shape, jnp.float32), train=False))


def init_variables(module: Any, shape: tuple[int, ...], key: jax.Array) -> dict:
    return init_fn(module, shape)(key)


def compile_parallel(lowered: list[Any], threads: int) -> list[tuple[Any, float]]:
    """(executable, seconds) of each lowering; XLA compiles in C++ without the GIL, so
    several threads cut the wait on big models."""
    def one(item: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        return item.compile(), time.perf_counter() - start

    if threads <= 1:
        return [one(item) for item in lowered]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, lowered))


def width_for(model: str, num_classes: int, dtype: Any, shape: tuple[int, ...], target: int,
              iterations: int = 14) -> tuple[float, int]:
    """The width multiplier whose parameter count is closest to `target` (bisection).

    Counts are step functions of the width (channel rounding), so the bisection brackets
    the crossing and the closer of its two ends wins.
    """
    def count(width: float) -> int:
        module = models.create(model, num_classes=num_classes, width_multiplier=width,
                               dtype=dtype)
        return count_params(abstract_params(module, shape))

    lo, hi = 1e-3, 1.0
    counts = {lo: count(lo), hi: count(hi)}
    if counts[hi] <= target:
        return hi, counts[hi]
    if counts[lo] >= target:
        return lo, counts[lo]
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        counts[mid] = count(mid)
        if counts[mid] <= target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: (abs(counts[w] - target), w))
    return round(best, 6), counts[best]


@dataclasses.dataclass
class Variant:
    """A module to time; trainable_params and description are filled in at init."""

    name: str
    module: Any
    description: dict
    trainable_params: int = 0
    variables: Optional[dict] = None  # initialised variables, once drawn


def smh_options_for(name: str, preset: Preset, smh_dtype: str,
                    matched_target: Optional[int]) -> dict:
    """compress() keywords of a compressed variant; baselines match SMH's trainable count."""
    if name in ("smh", "smh_f32"):
        size = {"fraction": preset.fraction, "target_params": preset.target_params}
    else:
        size = {"fraction": None, "target_params": matched_target}
    options = {**size, "dtype": "float32" if name == "smh_f32" else smh_dtype}
    if name.startswith("hash"):
        options.update(pool="hash", num_hashes=int(name[4:]))
    elif name in ("kronecker", "meta"):
        options.update(pool=name)
    return options


def build_variants(names: tuple[str, ...], preset: Preset, dtype: str, smh_dtype: str,
                   shape: tuple[int, ...]) -> tuple[list[Variant], int]:
    """The modules to time and the trainable size they are matched to (SMH's count)."""
    jdtype = jnp.dtype(dtype)
    base = models.create(preset.model, num_classes=preset.num_classes, dtype=jdtype)
    smh_module = smh_jax.compress(base, **smh_options_for("smh", preset, smh_dtype, None))
    # Concrete: the SMH variant reuses this draw (a compressed init samples the model's
    # initializers, the slowest part of building).
    smh_variables = init_variables(smh_module, shape, jax.random.key(0))
    matched = count_params(smh_variables["params"])
    out = []
    for name in names:
        if name == "smh":
            out.append(Variant(name, smh_module, {
                "kind": "smh", "options": {k: v for k, v in smh_options_for(
                    name, preset, smh_dtype, None).items() if v is not None}},
                variables=smh_variables))
        elif name == "dense":
            out.append(Variant(name, base, {"kind": "dense"}))
        elif name == "width":
            width, _ = width_for(preset.model, preset.num_classes, jdtype, shape, matched)
            module = models.create(preset.model, num_classes=preset.num_classes,
                                   width_multiplier=width, dtype=jdtype)
            out.append(Variant(name, module, {"kind": "width", "width_multiplier": width}))
        else:
            options = smh_options_for(name, preset, smh_dtype, matched)
            out.append(Variant(name, smh_jax.compress(base, **options), {
                "kind": "smh", "options": {k: v for k, v in options.items() if v is not None}}))
    return out, matched


# ----------------------------------------------------------------------------- steps


def make_optimizer(params: Any) -> optax.GradientTransformation:
    """The CIFAR/ImageNet ResNet recipes' update: decoupled-free L2 on ndim > 1, Nesterov SGD."""
    mask = jax.tree.map(lambda x: x.ndim > 1, params)
    return optax.chain(optax.add_decayed_weights(1e-4, mask),
                       optax.sgd(0.1, momentum=0.9, nesterov=True))


def make_train_step(module: Any, tx: optax.GradientTransformation) -> Callable:
    """Forward, backward and update; state = (params, model_state, opt_state), donated."""
    def step(state, images, labels, rng):
        params, model_state, opt_state = state

        def loss_fn(p):
            logits, new_model_state = module.apply(
                {"params": p, **model_state}, images, train=True,
                mutable=list(model_state), rngs={"dropout": rng})
            loss = optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), labels).mean()
            return loss, new_model_state

        (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_model_state, new_opt_state), loss

    return jax.jit(step, donate_argnums=0)


@dataclasses.dataclass
class Measurement:
    """One compiled callable, its arguments and its timings."""

    group: str  # 'train', 'materialize', 'inference'
    name: str
    lowered: Any
    args: tuple
    stateful: bool = False  # train steps: output[0] replaces args[0] (donated)
    compiled: Any = None
    compile_s: float = 0.0
    samples: list = dataclasses.field(default_factory=list)
    memory: dict = dataclasses.field(default_factory=dict)
    flops: Optional[float] = None
    device_peak_bytes: Optional[int] = None

    def run(self, calls: int = 1) -> float:
        """`calls` back-to-back calls, blocked until the outputs are ready; seconds per call.

        More than one call per sample amortizes the host-device synchronization, which
        would otherwise add its latency to every (short) step.
        """
        start = time.perf_counter()
        for _ in range(calls):
            out = self.compiled(*self.args)
            if self.stateful:
                self.args = (out[0],) + self.args[1:]
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / calls


def memory_of(compiled: Any) -> dict:
    """Bytes the executable needs: arguments + outputs - donated/aliased + temporaries."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    out = {k: int(getattr(stats, f"{k}_size_in_bytes", 0))
           for k in ("argument", "output", "alias", "temp")}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def flops_of(compiled: Any) -> Optional[float]:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def device_peak_bytes() -> Optional[int]:
    stats = jax.local_devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def prepare(variants: list[Variant], shape: tuple[int, ...], dtype: str, extras: tuple[str, ...],
            threads: int = 1, seed: int = 0) -> list[Measurement]:
    """Initialises every variant and lowers its train step (and the extra measurements)."""
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.standard_normal(shape, np.float32), jnp.dtype(dtype))
    labels = jnp.asarray(rng.integers(0, 10, shape[0]), jnp.int32)
    key = jax.random.key(seed)
    out = []
    inits = {}
    one = (1,) + shape[1:]  # parameter shapes do not depend on the batch
    pending = [v for v in variants if v.variables is None]
    inits_compiled = compile_parallel([init_fn(v.module, one).lower(key) for v in pending],
                                      threads)
    for v, (executable, _) in zip(pending, inits_compiled, strict=True):
        v.variables = executable(key)
    for v in variants:
        variables = v.variables
        params = variables["params"]
        v.trainable_params = count_params(params)
        if v.description["kind"] == "smh":
            v.description["pool"] = smh_jax.smh_params_of(params).layout.pool.describe()
        model_state = {k: x for k, x in variables.items() if k != "params"}
        inits[v.name] = (params, model_state)
        tx = make_optimizer(params)
        state = (params, model_state, tx.init(params))
        step = make_train_step(v.module, tx)
        # Copies: the step donates its state, the extras below keep reading `params`.
        state = jax.tree.map(jnp.copy, state)
        out.append(Measurement("train", v.name, step.lower(state, images, labels, key),
                               (state, images, labels, key), stateful=True))
    compressed = [v for v in variants if v.description["kind"] == "smh"]
    if "materialize" in extras:
        for v in compressed:
            smh_params = smh_jax.smh_params_of(inits[v.name][0])
            cotangent = jax.tree.map(lambda x: jnp.full(x.shape, 0.01, x.dtype),
                                     jax.eval_shape(smh_jax.materialize, smh_params))
            forward = jax.jit(smh_jax.materialize)
            out.append(Measurement("materialize", f"{v.name}", forward.lower(smh_params),
                                   (smh_params,)))
            vjp = jax.jit(lambda p, g: jax.vjp(smh_jax.materialize, p)[1](g)[0])
            out.append(Measurement("materialize", f"{v.name}+grad",
                                   vjp.lower(smh_params, cotangent), (smh_params, cotangent)))
    by_name = {v.name: v for v in variants}
    if "inference" in extras and "dense" in by_name:
        base = by_name["dense"].module
        infer = jax.jit(lambda variables, x: base.apply(variables, x, train=False))
        dense_vars = {"params": inits["dense"][0], **inits["dense"][1]}
        infer_lowered = infer.lower(dense_vars, images)
        out.append(Measurement("inference", "dense", infer_lowered, (dense_vars, images)))
        for v in (v for v in compressed if v.name in ("smh", "smh_f32")):
            params, model_state = inits[v.name]
            # The plain model on materialized weights (stored like the dense model's, in
            # float32): what a deployed SMH model runs. The very executable dense runs,
            # only the weights differ: its ratio to dense measures the noise.
            weights = jax.jit(lambda p: smh_jax.materialize(p, jnp.float32))(
                smh_jax.smh_params_of(params))
            materialized = {"params": weights, **model_state}
            out.append(Measurement("inference", f"{v.name} materialized", infer_lowered,
                                   (materialized, images)))
            module = v.module
            on_the_fly = jax.jit(lambda variables, x, m=module: m.apply(variables, x,
                                                                       train=False))
            smh_vars = {"params": params, **model_state}
            out.append(Measurement("inference", f"{v.name} on the fly",
                                   on_the_fly.lower(smh_vars, images), (smh_vars, images)))
    return out


def compile_all(measurements: list[Measurement], threads: int) -> None:
    """Compiles every measurement; those that share a lowering share one executable."""
    unique: dict[int, Any] = {}
    for m in measurements:
        unique.setdefault(id(m.lowered), m.lowered)
    done = dict(zip(unique, compile_parallel(list(unique.values()), threads), strict=True))
    for m in measurements:
        m.compiled, m.compile_s = done[id(m.lowered)]
        m.lowered = None
        m.memory = memory_of(m.compiled)
        m.flops = flops_of(m.compiled)


def run_interleaved(measurements: list[Measurement], warmup: int, repetitions: int,
                    calls: int = 1, deadline: Optional[float] = None,
                    log: Callable[[str], None] = print) -> int:
    """Warm-up, then rounds that run every measurement once, each round in a fresh
    (seeded) random order: a fixed or merely rotated order would always put the same
    measurement after the same one, so one would always find the caches the other left.

    With a `deadline` (a time.perf_counter() value), the repetitions are cut to what the
    warm-up's last round says fits (at least 1). A SIGTERM (e.g. from `timeout`) ends the
    timing after the last complete round, so what was measured is still reported.
    Returns the number of complete rounds.
    """
    stop = _TermFlag()
    try:
        round_s = 0.0
        for m in measurements:
            for _ in range(warmup):
                last = m.run()
            round_s += last * calls if warmup else 0.0
            m.device_peak_bytes = device_peak_bytes()  # cumulative over the process so far
        if deadline is not None and round_s > 0:
            fit = int((deadline - time.perf_counter()) / round_s)
            if fit < repetitions:
                repetitions = max(1, fit)
                log(f"  time budget: {repetitions} repetitions fit ({round_s:.2f} s a round)")
        order = np.random.default_rng(0)
        start = time.perf_counter()
        for r in range(repetitions):
            for i in order.permutation(len(measurements)):
                if stop.raised:
                    for m in measurements:  # only complete rounds: paired ratios stay paired
                        del m.samples[r:]
                    log(f"  SIGTERM: stopped after {r} complete repetitions")
                    return r
                measurements[i].samples.append(measurements[i].run(calls))
            if r == 0 or (r + 1) % max(1, repetitions // 5) == 0:
                log(f"  repetition {r + 1}/{repetitions} ({time.perf_counter() - start:.1f} s)")
        return repetitions
    finally:
        stop.restore()


class NothingMeasured(RuntimeError):
    """Stopped before one complete round: there is nothing to report."""


class _TermFlag:
    """Turns SIGTERM into a flag while installed (main thread only)."""

    def __init__(self):
        self.raised = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        self.raised = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


# ----------------------------------------------------------------------------- report


def summarize_samples(seconds: list[float]) -> dict:
    ms = np.asarray(seconds, np.float64) * 1e3
    p10, p25, p50, p75, p90 = np.percentile(ms, [10, 25, 50, 75, 90])
    return {"median": float(p50), "p10": float(p10), "p25": float(p25), "p75": float(p75),
            "p90": float(p90), "min": float(ms.min()), "mean": float(ms.mean())}


def paired_ratios(samples: list[float], reference: list[float]) -> dict:
    """Per-repetition ratios to the reference measured in the same round: robust to drift."""
    ratios = np.asarray(samples) / np.asarray(reference)
    p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
    return {"median": float(p50), "p10": float(p10), "p90": float(p90)}


def group_report(measurements: list[Measurement], group: str, reference: Optional[str],
                 batch: int) -> list[dict]:
    rows = [m for m in measurements if m.group == group]
    ref = next((m for m in rows if m.name == reference), None)
    out = []
    for m in rows:
        stats = summarize_samples(m.samples)
        row = {"name": m.name, "ms_median": stats["median"], "ms": stats,
               "ms_samples": [s * 1e3 for s in m.samples], "compile_s": m.compile_s,
               "memory_bytes": m.memory, "flops": m.flops,
               "device_peak_bytes_so_far": m.device_peak_bytes}
        if ref is not None:
            ref_stats = summarize_samples(ref.samples)
            row["ratio_to_dense"] = stats["median"] / ref_stats["median"]
            # Fastest against fastest: on a shared machine, the least disturbed calls.
            row["ratio_of_min_to_dense"] = stats["min"] / ref_stats["min"]
            row["ratio_paired"] = paired_ratios(m.samples, ref.samples)
        if group != "materialize":
            row["images_per_second"] = batch / (stats["median"] / 1e3)
        out.append(row)
    return out


def git_commit() -> tuple[Optional[str], Optional[bool]]:
    """(HEAD, whether tracked files differ from it); GIT_COMMIT where there is no .git."""
    if not os.path.isdir(os.path.join(ROOT, ".git")) and os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"], None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode:
        return None, None
    return head.stdout.strip(), bool(dirty.stdout.strip())


def _span(paired: Optional[dict]) -> str:
    return "-" if paired is None else f"{paired['p10']:.3f}-{paired['p90']:.3f}"


def _mb(nbytes: Optional[int]) -> str:
    return "-" if not nbytes else f"{nbytes / 2**20:,.1f}"


def format_table(result: dict) -> str:
    """The printed report: absolute figures and ratios to dense."""
    lines = [
        f"{result['preset']}: {result['model']} {result['image_size']}x{result['image_size']} "
        f"batch {result['batch']} {result['dtype']} (SMH matrix {result['smh_dtype']}) on "
        f"{result['device_count']} x {result['device']}, jax {result['jax_version']}, "
        f"{result['repetitions']} interleaved repetitions, commit {result['git_commit']}",
        "",
        f"{'training step':<16} {'trainable':>11} {'ms median':>10} {'p10-p90':>19} "
        f"{'ms min':>10} {'/dense':>7} {'paired p10-p90':>15} {'img/s':>9} {'peak MiB':>9}",
    ]
    for v in result["variants"]:
        ratio = v.get("ratio_to_dense")
        lines.append(
            f"{v['name']:<16} {v['trainable_params']:>11,} {v['step_ms_median']:>10.2f} "
            f"{v['ms']['p10']:>9.2f}-{v['ms']['p90']:<9.2f} {v['ms']['min']:>10.2f} "
            f"{'-' if ratio is None else f'{ratio:.3f}':>7} "
            f"{_span(v.get('ratio_paired')):>15} "
            f"{v['images_per_second']:>9,.0f} {_mb(v['memory_bytes'].get('peak')):>9}")
    for group, title in (("materialize", "materialization"), ("inference", "inference")):
        rows = result[group]
        if not rows:
            continue
        lines += ["", f"{title:<28} {'ms median':>10} {'p10-p90':>17} {'/dense':>7} "
                      f"{'peak MiB':>9}"]
        for row in rows:
            ratio = row.get("ratio_to_dense")
            lines.append(f"{row['name']:<28} {row['ms_median']:>10.3f} "
                         f"{row['ms']['p10']:>8.3f}-{row['ms']['p90']:<8.3f} "
                         f"{'-' if ratio is None else f'{ratio:.3f}':>7} "
                         f"{_mb(row['memory_bytes'].get('peak')):>9}")
    if result["checks"]:
        lines += ["", "checks: " + ", ".join(f"{k} {v:.3f}" for k, v in result["checks"].items())]
    return "\n".join(lines)


def checks(variants: list[dict], inference: list[dict]) -> dict:
    """The issue's target figures, computed from this run's medians."""
    med = {v["name"]: v["step_ms_median"] for v in variants}
    out = {}
    if "smh" in med and "dense" in med:
        out["smh/dense"] = med["smh"] / med["dense"]
        out["smh/dense (min)"] = next(v for v in variants if v["name"] == "smh")[
            "ratio_of_min_to_dense"]
    for k in ("hash1", "hash2", "hash10", "kronecker"):
        if k in med and "smh" in med:
            out[f"{k}/smh"] = med[k] / med["smh"]
    for row in inference:
        if row["name"] == "smh materialized" and "ratio_to_dense" in row:
            out["inference materialized/dense"] = row["ratio_to_dense"]
    return out


# ----------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every entry point here
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = _Parser(description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="resnet32_cifar",
                   help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: dense, smh, smh_f32, kronecker, meta, hashK, width")
    p.add_argument("--extras", default=",".join(EXTRAS),
                   help="comma-separated subset of materialize, inference; 'none' for none")
    p.add_argument("--batch", type=int, default=0, help="override the preset's batch size")
    p.add_argument("--dtype", default="", help="compute dtype: float32, bfloat16, float16, auto")
    p.add_argument("--smh_dtype", default="compute",
                   help="dtype of the virtual matrix: compute (= --dtype), float32, bfloat16")
    p.add_argument("--model", default="", help="override the preset's model (registry name)")
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


def resolve(args: argparse.Namespace) -> tuple[Preset, str, int]:
    """Preset with overrides applied, compute dtype and repetitions. Raises UserError."""
    if args.preset not in PRESETS:
        raise UserError(f"--preset: {args.preset!r} is not one of {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    if args.model:
        models.default_resolution(args.model)  # UserError naming the allowed models
        preset = dataclasses.replace(preset, model=args.model)
    if args.calls_per_sample < 1:
        raise UserError(f"--calls_per_sample: {args.calls_per_sample} must be >= 1")
    for flag in ("batch", "image_size", "repetitions", "warmup", "compile_threads",
                 "max_seconds"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag}: {getattr(args, flag)} must be >= 0")
    if args.small:
        preset = dataclasses.replace(preset, batch=4,
                                     image_size=max(8, models.min_image_size(preset.model)))
    if args.batch:
        preset = dataclasses.replace(preset, batch=args.batch)
    if args.image_size:
        preset = dataclasses.replace(preset, image_size=args.image_size)
    dtype = compute_dtype(args.dtype or preset.dtype, jax.default_backend())
    allowed = ("float32", "bfloat16", "float16")
    if dtype not in allowed:
        raise UserError(f"--dtype: {dtype!r} is not one of {', '.join(allowed)}, auto")
    if args.smh_dtype not in ("compute",) + allowed:
        raise UserError(f"--smh_dtype: {args.smh_dtype!r} is not one of compute, "
                        f"{', '.join(allowed)}")
    repetitions = args.repetitions or (3 if args.small else 30)
    return preset, dtype, repetitions


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Builds, compiles, times; returns the result dict (what --json writes)."""
    preset, dtype, repetitions = resolve(args)
    names = variant_names(args.variants)
    extras = () if args.extras == "none" else tuple(
        e.strip() for e in args.extras.split(",") if e.strip())
    for e in extras:
        if e not in EXTRAS:
            raise UserError(f"--extras: {e!r} is not one of {', '.join(EXTRAS)}, none")
    smh_dtype = dtype if args.smh_dtype == "compute" else args.smh_dtype
    shape = (preset.batch, preset.image_size, preset.image_size, 3)
    threads = args.compile_threads or max(1, min(8, (os.cpu_count() or 2) // 2))

    started = time.time()
    log(f"building {', '.join(names)} for {preset.model} {shape} {dtype} ...")
    variants, matched = build_variants(names, preset, dtype, smh_dtype, (1,) + shape[1:])
    log(f"initialising ({time.time() - started:.0f} s) ...")
    measurements = prepare(variants, shape, dtype, extras, threads)
    for v in variants:
        log(f"  {v.name:<10} {v.trainable_params:>12,} trainable  {v.description}")
    log(f"compiling {len(measurements)} executables ({threads} threads; "
        f"{time.time() - started:.0f} s) ...")
    compile_all(measurements, threads)
    log(f"timing ({time.time() - started:.0f} s): {args.warmup} warm-up calls each, "
        f"{repetitions} interleaved repetitions of {args.calls_per_sample} call(s) ...")
    deadline = None
    if args.max_seconds:
        deadline = time.perf_counter() + args.max_seconds - (time.time() - started) - 5.0
    repetitions_run = run_interleaved(measurements, args.warmup, repetitions,
                                      args.calls_per_sample, deadline, log)
    if repetitions_run == 0:
        raise NothingMeasured("stopped (SIGTERM) before one complete repetition")

    train = group_report(measurements, "train", "dense", preset.batch)
    by_name = {v.name: v for v in variants}
    for row in train:
        v = by_name[row["name"]]
        row.update(trainable_params=v.trainable_params, step_ms_median=row["ms_median"],
                   description=v.description)
    materialize = group_report(measurements, "materialize", None, preset.batch)
    inference = group_report(measurements, "inference", "dense", preset.batch)
    device = jax.local_devices()[0]
    commit, dirty = git_commit()
    result = {
        "preset": args.preset, "model": preset.model, "image_size": preset.image_size,
        "num_classes": preset.num_classes, "batch": preset.batch, "dtype": dtype,
        "smh_dtype": smh_dtype, "size": {"fraction": preset.fraction,
                                         "target_params": preset.target_params,
                                         "matched_trainable_params": matched},
        "small": bool(args.small), "repetitions": repetitions_run,
        "repetitions_requested": repetitions, "warmup": args.warmup,
        "calls_per_sample": args.calls_per_sample,
        "interleaved": True, "device": device.device_kind, "platform": device.platform,
        "device_count": jax.device_count(), "jax_version": jax.__version__,
        "jaxlib_version": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "flax_version": flax.__version__, "optax_version": optax.__version__,
        "python": platform.python_version(), "host_cpus": os.cpu_count(),
        "git_commit": commit, "git_dirty": dirty, "argv": sys.argv[1:],
        "started_unix": started, "wall_s": time.time() - started,
        "variants": train, "materialize": materialize, "inference": inference,
    }
    result["checks"] = checks(train, inference)
    return result


def _jaxlib_version() -> Optional[str]:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args, log=lambda s: print(s, flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NothingMeasured as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print()
    print(format_table(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
