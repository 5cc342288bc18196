"""Side by side: what one training step costs with SMH, its baselines and the dense model.

Times the jitted training step (forward, backward, SGD-momentum update with batch
statistics; state buffers donated) of: the dense model; SMH (product pool); the
Kronecker pool; unstructured hashing with K hashes (`hashK`, the paper's Table 1
baselines); the width multiplier; all at the same trainable size (the SMH run's count;
the width from `sizing.match_width`). Also the materialization alone (SMH params ->
dense tree, forward and forward+backward) and inference (the dense model; the plain
model on materialized weights, which must cost the same; the compressed model, which
materializes on every call). Compressed variants compute their virtual weights in the
compute dtype unless `smh_dtype` says otherwise; `smh_f32` is SMH with a float32
virtual matrix under bfloat16 compute.

Every measurement is compiled once ahead of time (a shape change would raise instead of
recompiling), warmed up, then timed interleaved (`timing.time_interleaved`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import smh_jax
from smh_jax import models
from smh_jax.core.options import DTYPES
from smh_jax.errors import UserError
from smh_jax.experiments import benchmark_report, provenance, sizing, timing
from smh_jax.models.spec import ModelSpec, count_params


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
    channels: int = 3


PRESETS = {
    # CIFAR-10 ResNet-32 at 10% (the size of the paper's Table 1), the fast recipe's batch.
    "resnet32_cifar": Preset("resnet32", 32, 10, 512, "auto", fraction=0.1),
    # ImageNet shapes; ResNet-50 at 25% (configs/resnet50_imagenet_smh.py).
    "resnet50": Preset("resnet50", 224, 1000, 256, "bfloat16", fraction=0.25),
    "efficientnet_b0": Preset("efficientnet_b0", 224, 1000, 256, "bfloat16", fraction=0.25),
    # B4 at 380x380 compressed to B0's 5,288,548 variables (configs/efficientnet_b4_smh.py).
    "efficientnet_b4": Preset("efficientnet_b4", 380, 1000, 64, "bfloat16",
                              target_params=5_288_548),
    # HashedNets' 3-layer MNIST MLP at 1/8, batch 100: the SMH product (6 n^2 M FLOPs a
    # step) next to a small model, and frozen vs learned scales.
    "mlp3_mnist": Preset("mlp3", 28, 10, 100, "float32", fraction=0.125, channels=1),
}
DEFAULT_VARIANTS = ("dense", "smh", "kronecker", "hash1", "hash2", "hash10", "width")
EXTRAS = ("materialize", "inference")
_VARIANT_RE = re.compile(
    r"^(dense|smh|smh_f32|smh_frozen|kronecker|meta|width|hash([1-9][0-9]*))$")


@dataclasses.dataclass(frozen=True)
class Options:
    """What to measure and how; defaults are the command line's."""

    preset: str = "resnet32_cifar"
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    extras: tuple[str, ...] = EXTRAS
    batch: int = 0  # 0: the preset's
    dtype: str = ""  # '': the preset's; float32, bfloat16, float16 or auto
    smh_dtype: str = "compute"  # dtype of the virtual matrix; 'compute' = dtype
    model: str = ""  # '': the preset's
    fraction: float = 0.0  # 0: the preset's SMH size
    image_size: int = 0  # 0: the preset's
    repetitions: int = 0  # 0: 30 (small: 3)
    warmup: int = 2
    calls_per_sample: int = 1
    compile_threads: int = 0  # 0: half the CPUs, at most 8
    max_seconds: float = 0.0  # 0: no budget
    small: bool = False  # batch 4 at the model's smallest input


class NothingMeasured(RuntimeError):
    """Stopped before one complete round: there is nothing to report."""


def variant_names(text: str) -> tuple[str, ...]:
    """Parses a variant list: dense, smh, smh_f32, smh_frozen (learn_scale=False),
    kronecker, meta, hashK (K >= 1), width."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise UserError(f"--variants: {text!r} names no variant")
    for name in names:
        if not _VARIANT_RE.match(name):
            raise UserError(f"--variants: {name!r} is not one of dense, smh, smh_f32, "
                            "smh_frozen, kronecker, meta, hashK (K >= 1), width")
    if len(set(names)) != len(names):
        raise UserError(f"--variants: {text!r} lists a variant twice")
    return names


def extra_names(text: str) -> tuple[str, ...]:
    """Parses the extras: a subset of materialize, inference; 'none' for none."""
    extras = () if text == "none" else tuple(e.strip() for e in text.split(",") if e.strip())
    for e in extras:
        if e not in EXTRAS:
            raise UserError(f"--extras: {e!r} is not one of {', '.join(EXTRAS)}, none")
    return extras


def resolve(options: Options, backend: str) -> tuple[Preset, str, str, int]:
    """(preset with overrides applied, compute dtype, SMH dtype, repetitions); UserError."""
    if options.preset not in PRESETS:
        raise UserError(f"--preset: {options.preset!r} is not one of {', '.join(PRESETS)}")
    preset = PRESETS[options.preset]
    if options.model:
        models.default_resolution(options.model)  # UserError naming the allowed models
        preset = dataclasses.replace(preset, model=options.model)
    if options.calls_per_sample < 1:
        raise UserError(f"--calls_per_sample: {options.calls_per_sample} must be >= 1")
    for flag in ("batch", "image_size", "repetitions", "warmup", "compile_threads",
                 "max_seconds"):
        if getattr(options, flag) < 0:
            raise UserError(f"--{flag}: {getattr(options, flag)} must be >= 0")
    if options.small:
        preset = dataclasses.replace(preset, batch=4,
                                     image_size=max(8, models.min_image_size(preset.model)))
    if options.fraction:
        if not 0 < options.fraction <= 1:
            raise UserError(f"--fraction: {options.fraction} is outside (0, 1]")
        preset = dataclasses.replace(preset, fraction=options.fraction, target_params=None)
    if options.batch:
        preset = dataclasses.replace(preset, batch=options.batch)
    if options.image_size:
        preset = dataclasses.replace(preset, image_size=options.image_size)
    dtype = options.dtype or preset.dtype
    if dtype == "auto":
        dtype = "float32" if backend == "cpu" else "bfloat16"
    if dtype not in DTYPES:
        raise UserError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}, auto")
    if options.smh_dtype not in ("compute",) + DTYPES:
        raise UserError(f"--smh_dtype: {options.smh_dtype!r} is not one of compute, "
                        f"{', '.join(DTYPES)}")
    smh_dtype = dtype if options.smh_dtype == "compute" else options.smh_dtype
    repetitions = options.repetitions or (3 if options.small else 30)
    return preset, dtype, smh_dtype, repetitions


# ----------------------------------------------------------------------------- variants


@dataclasses.dataclass
class Variant:
    """A module to time; trainable_params and the pool's description are filled at init."""

    name: str
    module: nn.Module
    description: dict
    trainable_params: int = 0
    variables: Optional[dict] = None  # initialised variables, once drawn


def init_fn(module: nn.Module, shape: tuple[int, ...]) -> Callable:
    """Jitted `module.init` on zero inputs of `shape`, taking the key."""
    return jax.jit(lambda r: module.init({"params": r, "dropout": r},
                                         jnp.zeros(shape, jnp.float32), train=False))


def smh_options_for(name: str, preset: Preset, smh_dtype: str,
                    matched_target: Optional[int]) -> dict[str, Any]:
    """compress() keywords of a compressed variant; baselines match SMH's trainable count."""
    if name in ("smh", "smh_f32", "smh_frozen"):
        size = {"fraction": preset.fraction, "target_params": preset.target_params}
    else:
        size = {"fraction": None, "target_params": matched_target}
    options = {**size, "dtype": "float32" if name == "smh_f32" else smh_dtype}
    if name == "smh_frozen":
        options["learn_scale"] = False
    if name.startswith("hash"):
        options.update(pool="hash", num_hashes=int(name[4:]))
    elif name in ("kronecker", "meta"):
        options.update(pool=name)
    return options


def build_variants(names: tuple[str, ...], preset: Preset, dtype: str, smh_dtype: str,
                   shape: tuple[int, ...]) -> tuple[list[Variant], int]:
    """The modules to time and the trainable size they are matched to (SMH's count)."""
    spec = ModelSpec(preset.model, num_classes=preset.num_classes, dtype=dtype)
    base = spec.create()
    smh_options = smh_options_for("smh", preset, smh_dtype, None)
    smh_module = smh_jax.compress(base, **smh_options)
    # Concrete: the SMH variant reuses this draw (a compressed init samples the model's
    # initializers, the slowest part of building).
    smh_variables = init_fn(smh_module, shape)(jax.random.key(0))
    matched = count_params(smh_variables["params"])
    out = []
    for name in names:
        if name == "smh":
            out.append(Variant(name, smh_module, {
                "kind": "smh", "options": {k: v for k, v in smh_options.items()
                                           if v is not None}}, variables=smh_variables))
        elif name == "dense":
            out.append(Variant(name, base, {"kind": "dense"}))
        elif name == "width":
            width, _ = sizing.match_width(sizing.width_params(spec, shape), matched)
            out.append(Variant(name, spec.with_width(width).create(),
                               {"kind": "width", "width_multiplier": width}))
        else:
            options = smh_options_for(name, preset, smh_dtype, matched)
            out.append(Variant(name, smh_jax.compress(base, **options), {
                "kind": "smh", "options": {k: v for k, v in options.items() if v is not None}}))
    return out, matched


# ----------------------------------------------------------------------------- steps


def make_optimizer(params: Any) -> optax.GradientTransformation:
    """The CIFAR/ImageNet ResNet recipes' update: L2 1e-4 on ndim > 1, Nesterov SGD."""
    mask = jax.tree.map(lambda x: x.ndim > 1, params)
    return optax.chain(optax.add_decayed_weights(1e-4, mask),
                       optax.sgd(0.1, momentum=0.9, nesterov=True))


def make_train_step(module: nn.Module, tx: optax.GradientTransformation) -> Callable:
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


def prepare(variants: list[Variant], shape: tuple[int, ...], dtype: str,
            extras: tuple[str, ...], threads: int = 1,
            seed: int = 0) -> list[timing.Measurement]:
    """Initialises every variant and lowers its train step (and the extra measurements)."""
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.standard_normal(shape, np.float32), jnp.dtype(dtype))
    labels = jnp.asarray(rng.integers(0, 10, shape[0]), jnp.int32)
    key = jax.random.key(seed)
    out = []
    inits = {}
    one = (1,) + shape[1:]  # parameter shapes do not depend on the batch
    pending = [v for v in variants if v.variables is None]
    compiled_inits = timing.compile_parallel(
        [init_fn(v.module, one).lower(key) for v in pending], threads)
    for v, (executable, _) in zip(pending, compiled_inits, strict=True):
        v.variables = executable(key)
    for v in variants:
        params = v.variables["params"]
        v.trainable_params = count_params(params)
        if v.description["kind"] == "smh":
            v.description["pool"] = smh_jax.smh_params_of(params).layout.pool.describe()
        model_state = {k: x for k, x in v.variables.items() if k != "params"}
        inits[v.name] = (params, model_state)
        tx = make_optimizer(params)
        step = make_train_step(v.module, tx)
        # Copies: the step donates its state, the extras below keep reading `params`.
        state = jax.tree.map(jnp.copy, (params, model_state, tx.init(params)))
        out.append(timing.Measurement("train", v.name, (state, images, labels, key),
                                      lowered=step.lower(state, images, labels, key),
                                      stateful=True))
    compressed = [v for v in variants if v.description["kind"] == "smh"]
    if "materialize" in extras:
        for v in compressed:
            smh_params = smh_jax.smh_params_of(inits[v.name][0])
            cotangent = jax.tree.map(lambda x: jnp.full(x.shape, 0.01, x.dtype),
                                     jax.eval_shape(smh_jax.materialize, smh_params))
            forward = jax.jit(smh_jax.materialize)
            out.append(timing.Measurement("materialize", v.name, (smh_params,),
                                          lowered=forward.lower(smh_params)))
            vjp = jax.jit(lambda p, g: jax.vjp(smh_jax.materialize, p)[1](g)[0])
            out.append(timing.Measurement("materialize", f"{v.name}+grad",
                                          (smh_params, cotangent),
                                          lowered=vjp.lower(smh_params, cotangent)))
    by_name = {v.name: v for v in variants}
    if "inference" in extras and "dense" in by_name:
        base = by_name["dense"].module
        infer = jax.jit(lambda variables, x: base.apply(variables, x, train=False))
        dense_vars = {"params": inits["dense"][0], **inits["dense"][1]}
        infer_lowered = infer.lower(dense_vars, images)
        out.append(timing.Measurement("inference", "dense", (dense_vars, images),
                                      lowered=infer_lowered))
        for v in (v for v in compressed if v.name in ("smh", "smh_f32")):
            params, model_state = inits[v.name]
            # The plain model on materialized weights (stored like the dense model's, in
            # float32): what a deployed SMH model runs. The very executable dense runs,
            # only the weights differ: its ratio to dense measures the noise.
            weights = jax.jit(lambda p: smh_jax.materialize(p, jnp.float32))(
                smh_jax.smh_params_of(params))
            out.append(timing.Measurement("inference", f"{v.name} materialized",
                                          ({"params": weights, **model_state}, images),
                                          lowered=infer_lowered))
            on_the_fly = jax.jit(lambda variables, x, m=v.module: m.apply(variables, x,
                                                                         train=False))
            smh_vars = {"params": params, **model_state}
            out.append(timing.Measurement("inference", f"{v.name} on the fly",
                                          (smh_vars, images),
                                          lowered=on_the_fly.lower(smh_vars, images)))
    return out


# ----------------------------------------------------------------------------- run


def run(options: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Builds, compiles, times; returns the result (what the script writes as JSON)."""
    preset, dtype, smh_dtype, repetitions = resolve(options, jax.default_backend())
    shape = (preset.batch, preset.image_size, preset.image_size, preset.channels)
    threads = options.compile_threads or max(1, min(8, (os.cpu_count() or 2) // 2))

    started = time.time()
    log(f"building {', '.join(options.variants)} for {preset.model} {shape} {dtype} ...")
    variants, matched = build_variants(options.variants, preset, dtype, smh_dtype,
                                       (1,) + shape[1:])
    log(f"initialising ({time.time() - started:.0f} s) ...")
    measurements = prepare(variants, shape, dtype, options.extras, threads)
    for v in variants:
        log(f"  {v.name:<10} {v.trainable_params:>12,} trainable  {v.description}")
    log(f"compiling {len(measurements)} executables ({threads} threads; "
        f"{time.time() - started:.0f} s) ...")
    timing.compile_all(measurements, threads)
    log(f"timing ({time.time() - started:.0f} s): {options.warmup} warm-up calls each, "
        f"{repetitions} interleaved repetitions of {options.calls_per_sample} call(s) ...")
    deadline = None
    if options.max_seconds:
        deadline = time.perf_counter() + options.max_seconds - (time.time() - started) - 5.0
    rounds = timing.time_interleaved(measurements, options.warmup, repetitions,
                                     options.calls_per_sample, deadline, log)
    if rounds == 0:
        raise NothingMeasured("stopped (SIGTERM) before one complete repetition")

    train = benchmark_report.group_report(measurements, "train", "dense", preset.batch)
    by_name = {v.name: v for v in variants}
    for row in train:
        v = by_name[row["name"]]
        row.update(trainable_params=v.trainable_params, step_ms_median=row["ms_median"],
                   description=v.description)
    materialize = benchmark_report.group_report(measurements, "materialize", None,
                                                preset.batch)
    inference = benchmark_report.group_report(measurements, "inference", "dense", preset.batch)
    return {
        "preset": options.preset, "model": preset.model, "image_size": preset.image_size,
        "num_classes": preset.num_classes, "batch": preset.batch, "dtype": dtype,
        "smh_dtype": smh_dtype, "size": {"fraction": preset.fraction,
                                         "target_params": preset.target_params,
                                         "matched_trainable_params": matched},
        "small": bool(options.small), "repetitions": rounds,
        "repetitions_requested": repetitions, "warmup": options.warmup,
        "calls_per_sample": options.calls_per_sample, "interleaved": True,
        **provenance.environment(), "options": dataclasses.asdict(options),
        "started_unix": started, "wall_s": time.time() - started,
        "variants": train, "materialize": materialize, "inference": inference,
        "ratios": benchmark_report.key_ratios(train, inference),
    }
