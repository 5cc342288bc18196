"""Training and evaluation, in labelled sections: model, state, steps, loop, evaluation.

Modeled on Flax's examples/imagenet `train.py` (plain functions: create_model,
create_train_state, train_step, eval_step, train_and_evaluate) with the parts that are
dated there done the current way: `jax.jit` over a `Mesh` with `NamedSharding`s, the
state created directly sharded, buffers donated, Orbax for every checkpoint including
the data-iterator position.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import smh_jax
from smh_jax import data as data_lib
from smh_jax import models
from smh_jax.data import augment
from smh_jax.errors import UserError
from smh_jax.training import checkpointing, config_base, optim, sharding
from smh_jax.training.metrics_writer import MetricsWriter, Progress
from smh_jax.training.train_state import TrainState, new_state


class TrainingError(RuntimeError):
    """A run that cannot continue (non-finite loss with nonfinite='stop')."""


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class ModelBundle:
    """The module to train, the plain module it wraps, and how to describe it."""

    module: nn.Module  # what is trained: SMH-wrapped or plain
    base: nn.Module  # the plain architecture
    num_classes: int
    compressed: bool


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> ModelBundle:
    """The architecture from the registry, wrapped by SMH unless the run is dense."""
    overrides = {k: config.model[k] for k in ("dropout_rate", "drop_connect_rate")
                 if config.model[k] is not None}
    try:
        base = models.create(config.model.name, num_classes=num_classes,
                             width_multiplier=config.model.width_multiplier,
                             dtype=jnp.dtype(config.model.dtype), **overrides)
    except TypeError as e:
        raise UserError(f"config.model: {config.model.name} does not take {sorted(overrides)} "
                        f"({e})") from None
    options = config_base.smh_options(config)
    if options is None:
        return ModelBundle(base, base, num_classes, compressed=False)
    return ModelBundle(smh_jax.SMH(model=base, options=options), base, num_classes, True)


def num_classes_of(config: ml_collections.ConfigDict, info: data_lib.DatasetInfo) -> int:
    return config.model.num_classes or info.num_classes


def input_shape(info: data_lib.DatasetInfo, batch: int = 1) -> tuple[int, ...]:
    return (batch, *info.image_shape)


def check_image_size(config: ml_collections.ConfigDict, info: data_lib.DatasetInfo) -> None:
    """The model must downsample the images to at least one pixel (before any compute)."""
    height, width = info.image_shape[:2]
    minimum = models.min_image_size(config.model.name)
    if min(height, width) < minimum:
        raise UserError(
            f"config.dataset.image_size: images of {height}x{width} are too small for "
            f"{config.model.name}, which needs at least {minimum}x{minimum}")


# ----------------------------------------------------------------------------- state


def _split_variables(variables: dict) -> tuple[Any, dict]:
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def init_variables(bundle: ModelBundle, shape: tuple[int, ...], rng: jax.Array) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    return bundle.module.init({"params": params_rng, "dropout": dropout_rng},
                              jnp.zeros(shape, jnp.float32), train=False)


def create_train_state(bundle: ModelBundle, tx: optax.GradientTransformation,
                       shape: tuple[int, ...], rng: jax.Array, use_ema: bool,
                       initial_variables: Optional[dict] = None) -> TrainState:
    """A fresh TrainState (jit this with out_shardings to create it directly sharded).

    `initial_variables` (e.g. the warm start's projection) replace the fresh variables;
    pass them as a jit argument, not a closure, so they are not embedded as constants.
    """
    init_rng, state_rng = jax.random.split(rng)
    params, model_state = _split_variables(init_variables(bundle, shape, init_rng))
    if initial_variables is not None:
        params, model_state = _split_variables(initial_variables)
    return new_state(params, model_state, tx.init(params), state_rng, use_ema)


# ----------------------------------------------------------------------------- steps


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int,
                  smoothing: float) -> jax.Array:
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def weights_l2(params: Any, include: str) -> jax.Array:
    """Sum of squares of the materialized weights that weight decay applies to."""
    dense = smh_jax.materialize(smh_jax.smh_params_of(params), jnp.float32)
    mask = optim.decay_mask(dense, include)
    pairs = zip(jax.tree.leaves(dense), jax.tree.leaves(mask), strict=True)
    return sum(jnp.sum(jnp.square(w)) for w, m in pairs if m)


def preprocess(images: jax.Array, rng: Optional[jax.Array], info: data_lib.DatasetInfo,
               dtype: Any) -> jax.Array:
    """On-device augmentation (train only) and normalization."""
    if rng is not None:
        images = augment.augment_batch(rng, images, info.augment)
    return augment.normalize(images, info.mean, info.std, dtype)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, bundle: ModelBundle,
               tx: optax.GradientTransformation, learning_rate_fn: Callable,
               config: ml_collections.ConfigDict, info: data_lib.DatasetInfo,
               l2_on_weights: float) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; non-finite updates are skipped (see config.nonfinite)."""
    aug_rng, dropout_rng = state.step_keys()
    images = preprocess(batch["image"], aug_rng, info, jnp.dtype(config.model.dtype))
    labels = batch["label"]

    def loss_fn(params):
        logits, new_model_state = bundle.module.apply(
            {"params": params, **state.model_state}, images, train=True,
            rngs={"dropout": dropout_rng}, mutable=list(state.model_state))
        loss = cross_entropy(logits, labels, bundle.num_classes, config.label_smoothing).mean()
        objective = loss
        if l2_on_weights:
            objective = loss + 0.5 * l2_on_weights * weights_l2(
                params, config.optimizer.weight_decay_include)
        return objective, (loss, logits, new_model_state)

    grads, (loss, logits, new_model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    # A finite loss and gradient can still give non-finite parameters (an infinite learning
    # rate, an overflowing update); such a step must not reach a checkpoint either.
    finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
              & _all_finite((new_params, new_model_state)))
    apply = finite
    if config.nonfinite == "stop":  # after the first bad step, keep the last good state
        apply = finite & (state.first_nonfinite_step < 0)

    def keep_if_applied(new, old):
        return jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)

    new_params = keep_if_applied(new_params, state.params)
    new_model_state = keep_if_applied(new_model_state, state.model_state)
    new_opt_state = keep_if_applied(new_opt_state, state.opt_state)
    ema_params, ema_model_state = state.ema_params, state.ema_model_state
    if config.ema_decay:
        # Debiased EMA (as the EfficientNet reference): short runs do not average in init.
        decay = jnp.minimum(config.ema_decay, (1.0 + state.step) / (10.0 + state.step))
        decay = jnp.where(apply, decay, 1.0)
        mix = lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype)  # noqa: E731
        ema_params = jax.tree.map(mix, ema_params, new_params)
        ema_model_state = jax.tree.map(mix, ema_model_state, new_model_state)
    first_bad = jnp.where(~finite & (state.first_nonfinite_step < 0), state.step,
                          state.first_nonfinite_step)
    new_state_ = state.replace(
        step=state.step + 1, params=new_params, model_state=new_model_state,
        opt_state=new_opt_state, ema_params=ema_params, ema_model_state=ema_model_state,
        skipped_steps=state.skipped_steps + (~apply).astype(jnp.int32),
        first_nonfinite_step=first_bad)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "learning_rate": learning_rate_fn(state.step),
        "grad_norm": grad_norm,
    }
    return new_state_, metrics


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def eval_step(variables: dict, batch: dict[str, jax.Array], *, bundle: ModelBundle,
              config: ml_collections.ConfigDict,
              info: data_lib.DatasetInfo) -> dict[str, jax.Array]:
    """Sums over the (padded) batch: correct, top-5 correct, loss, count."""
    images = preprocess(batch["image"], None, info, jnp.dtype(config.model.dtype))
    logits = bundle.module.apply(variables, images, train=False).astype(jnp.float32)
    labels, mask = batch["label"], batch["mask"]
    top5 = jnp.any(jax.lax.top_k(logits, min(5, logits.shape[-1]))[1] == labels[:, None], -1)
    loss = cross_entropy(logits, labels, bundle.num_classes, 0.0)
    return {"correct": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            "correct_top5": jnp.sum(top5 * mask), "loss": jnp.sum(loss * mask),
            "count": jnp.sum(mask)}


# ----------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Experiment:
    """Everything built from a config before the first step; shared by train and eval."""

    config: ml_collections.ConfigDict
    info: data_lib.DatasetInfo
    source: Any
    bundle: ModelBundle
    mesh: jax.sharding.Mesh
    steps_per_epoch: int
    total_steps: int
    learning_rate_fn: Callable
    tx: optax.GradientTransformation
    abstract_state: TrainState
    state_shardings: Any
    meta: dict


def check_batch_sizes(config: ml_collections.ConfigDict) -> None:
    devices, processes = jax.device_count(), jax.process_count()
    for name in ("batch_size", "eval_batch_size"):
        size = config[name] or config.batch_size
        if size % devices or size % processes:
            raise UserError(f"config.{name}: {size} is not divisible by the {devices} devices "
                            f"and {processes} processes; use a multiple of {devices}")


def fingerprint(config: ml_collections.ConfigDict, bundle: ModelBundle,
                abstract_params: Any) -> dict:
    """What a checkpoint must match: model, dataset and the SMH layout."""
    meta = {
        "model": {"name": config.model.name, "num_classes": bundle.num_classes,
                  "width_multiplier": float(config.model.width_multiplier)},
        "dataset": {"name": config.dataset.name, "source": config.dataset.source,
                    "image_size": int(config.dataset.image_size)},
        "smh": None,
    }
    if bundle.compressed:
        meta["smh"] = smh_jax.smh_params_of(abstract_params).layout.fingerprint()
    return meta


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds model, optimizer and abstract state (no compute)."""
    config_base.validate(config)
    check_batch_sizes(config)
    info = data_lib.get_info(config.dataset)
    check_image_size(config, info)
    bundle = create_model(config, num_classes_of(config, info))
    steps_per_epoch = info.num_train // config.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"config.batch_size: {config.batch_size} is larger than the "
                        f"{info.num_train} training examples")
    total_steps = config.num_steps or int(round(config.num_epochs * steps_per_epoch))
    learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, total_steps)
    shape = input_shape(info)
    abstract_params = jax.eval_shape(
        lambda r: init_variables(bundle, shape, r)["params"], jax.random.key(0))
    decay_variables = not (bundle.compressed and config.smh.weight_decay_on == "weights")
    tx = optim.create_optimizer(config, learning_rate_fn, abstract_params, decay_variables)
    abstract_state = jax.eval_shape(
        lambda r: create_train_state(bundle, tx, shape, r, bool(config.ema_decay)),
        jax.random.key(0))
    mesh = sharding.create_mesh()
    shardings = sharding.state_shardings(abstract_state, mesh, config.sharding_rules)
    return Experiment(config, info, data_lib.create_source(config.dataset), bundle, mesh,
                      steps_per_epoch, total_steps, learning_rate_fn, tx, abstract_state,
                      shardings, fingerprint(config, bundle, abstract_params))


def warm_start(experiment: Experiment) -> Optional[dict]:
    """The projected dense model of config.smh.init_from_dense (computed on the host), or None."""
    path = experiment.config.smh.init_from_dense
    if not path:
        return None
    from smh_jax.formats import warm_start as warm_start_lib

    abstract = experiment.abstract_state
    variables, errors = warm_start_lib.warm_start(path, abstract.params, abstract.model_state)
    logging.info("warm start: projected %s onto the factors (relative error of the weights "
                 "%.4f)", path, errors["overall"])
    return variables


def initial_state(experiment: Experiment) -> TrainState:
    """The sharded state a fresh run starts from (the warm start's projection if configured)."""
    config = experiment.config
    init = jax.jit(functools.partial(
        create_train_state, experiment.bundle, experiment.tx, input_shape(experiment.info),
        use_ema=bool(config.ema_decay)),
        out_shardings=experiment.state_shardings)
    return init(jax.random.key(config.seed), initial_variables=warm_start(experiment))


def count_params(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def parameter_accounting(experiment: Experiment) -> dict[str, Any]:
    """Dense count, trainable count, achieved fraction (from shapes only)."""
    params = experiment.abstract_state.params
    if experiment.bundle.compressed:
        info = smh_jax.accounting(smh_jax.smh_params_of(params))
        return {"dense_params": info["dense_params"], "trainable_params": info["trainable"],
                "fraction": info["fraction"], "smh": info}
    # A dense run's "dense" reference is the full-width architecture (width baselines).
    config = experiment.config
    full = models.create(config.model.name, num_classes=experiment.bundle.num_classes)
    shape = input_shape(experiment.info)
    full_params = jax.eval_shape(
        lambda r: full.init({"params": r, "dropout": r}, jnp.zeros(shape), train=False),
        jax.random.key(0))["params"]
    trainable = count_params(params)
    return {"dense_params": count_params(full_params), "trainable_params": trainable,
            "fraction": trainable / count_params(full_params), "smh": None}


def jit_steps(experiment: Experiment) -> tuple[Callable, Callable]:
    """The jitted train step (state donated) and eval step, with explicit shardings."""
    config, bundle = experiment.config, experiment.bundle
    batch_sh = sharding.batch_sharding(experiment.mesh)
    replicated = sharding.replicated(experiment.mesh)
    l2 = 0.0
    if bundle.compressed and config.smh.weight_decay_on == "weights":
        l2 = config.optimizer.weight_decay
    train = jax.jit(
        functools.partial(train_step, bundle=bundle, tx=experiment.tx,
                          learning_rate_fn=experiment.learning_rate_fn, config=config,
                          info=experiment.info, l2_on_weights=l2),
        in_shardings=(experiment.state_shardings, batch_sh),
        out_shardings=(experiment.state_shardings, replicated), donate_argnums=0)
    evaluate = jax.jit(
        functools.partial(eval_step, bundle=bundle, config=config, info=experiment.info),
        out_shardings=replicated)
    return train, evaluate


# ----------------------------------------------------------------------------- loop


class _DevicePrefetch:
    """Puts the next batches on the devices while the current step runs."""

    def __init__(self, iterator: Iterator[dict], batch_sh, size: int = 2):
        self._iterator, self._sharding, self._size = iterator, batch_sh, size
        self._queue: list = []

    def __next__(self) -> dict:
        while len(self._queue) < self._size:
            self._queue.append(sharding.global_batch(next(self._iterator), self._sharding))
        return self._queue.pop(0)


def evaluate(experiment: Experiment, eval_fn: Callable, variables: dict) -> dict[str, float]:
    """Top-1, top-5 and loss over the whole eval split (every example exactly once)."""
    config = experiment.config
    batch_size = config.eval_batch_size or config.batch_size
    batch_sh = sharding.batch_sharding(experiment.mesh)
    totals = None
    for batch in experiment.source.eval_iterator(
            global_batch_size=batch_size, process_index=jax.process_index(),
            process_count=jax.process_count()):
        sums = eval_fn(variables, sharding.global_batch(batch, batch_sh))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = max(float(totals["count"]), 1.0)
    return {"accuracy": float(totals["correct"]) / count,
            "top5": float(totals["correct_top5"]) / count,
            "loss": float(totals["loss"]) / count, "examples": int(totals["count"])}


class _StopSignal:
    """SIGTERM (a preemption notice) asks the loop to checkpoint and exit.

    With several processes, JAX's distributed preemption service owns SIGTERM and agrees
    on one step at which every process stops (`reached_preemption`); installing our own
    handler there would hide the notice from it, and processes stopping at different
    steps would deadlock in the checkpoint's collectives.
    """

    def __init__(self, checkpointer: checkpointing.Checkpointer):
        self.requested = False
        self._previous = None
        self._checkpointer = checkpointer
        self._multi_process = jax.process_count() > 1
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def reached(self, step: int) -> bool:
        if self._multi_process:
            return self._checkpointer.reached_preemption(step)
        return self.requested

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Preempted(Exception):
    """Raised after a SIGTERM-triggered checkpoint; the CLI exits with status 143."""


def prepare_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test_{os.getpid()}")
        with open(probe, "w", encoding="utf-8") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserError(f"--workdir {workdir!r} is not writable ({e.strerror})") from None


_METRIC_ORDER = ("loss", "accuracy", "learning_rate", "grad_norm")


def _mean_metrics(history: list[dict]) -> dict[str, float]:
    fetched = jax.device_get(history)
    order = [k for k in _METRIC_ORDER if k in fetched[0]] + sorted(
        k for k in fetched[0] if k not in _METRIC_ORDER)
    return {k: float(np.mean([m[k] for m in fetched])) for k in order}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (resuming from WORKDIR if it holds checkpoints), evaluates, writes summary.json.

    A resumed run ignores config.smh.init_from_dense (the warm start): the checkpoint wins.
    """
    start_time = time.time()
    experiment = build_experiment(config)
    prepare_workdir(workdir)
    primary = jax.process_index() == 0
    checkpointer = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints,
        async_save=config.async_checkpointing)
    latest = checkpointer.latest_step()
    if latest is not None:
        checkpointer.check_compatible(latest, experiment.meta)
    if primary:  # only once the workdir is known to be this run's
        checkpointer.discard_interrupted_saves()
    accounting = parameter_accounting(experiment)
    if primary:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json_best_effort(indent=2))
        logging.info("parameters: dense %s, trainable %s, fraction %.4f",
                     f"{accounting['dense_params']:,}", f"{accounting['trainable_params']:,}",
                     accounting["fraction"])
        if accounting["smh"]:
            logging.info("\n%s", smh_jax.format_accounting(accounting["smh"]))

    train_fn, eval_fn = jit_steps(experiment)
    if latest is not None:
        state, data_state = checkpointer.restore(latest, checkpointing.abstract_with_shardings(
            experiment.abstract_state, experiment.state_shardings))
        start_step = int(data_state["step"])
        logging.info("resumed from %s at step %d", checkpointer.directory, start_step)
    else:
        state = initial_state(experiment)
        start_step = 0

    train_iter = experiment.source.train_iterator(
        seed=config.seed, global_batch_size=config.batch_size, start_step=start_step,
        process_index=jax.process_index(), process_count=jax.process_count())
    batches = _DevicePrefetch(train_iter, sharding.batch_sharding(experiment.mesh))
    writer = MetricsWriter(workdir, enabled=primary)
    progress = Progress(experiment.total_steps, config.batch_size, start_step)
    stop = _StopSignal(checkpointer)
    history: list[dict] = []
    eval_metrics: dict[str, float] = {}
    use_ema = bool(config.ema_decay)
    loop_start = time.time()

    def data_state_at(step: int) -> dict:
        return {**train_iter.state(), "step": step}

    def save(step: int) -> None:
        check_finite(step)
        checkpointer.save(step, state, data_state_at(step), experiment.meta)

    def check_finite(step: int) -> None:
        first_bad = int(jax.device_get(state.first_nonfinite_step))
        if first_bad >= 0 and config.nonfinite == "stop":
            checkpointer.wait()
            kept = checkpointer.latest_step()
            raise TrainingError(
                f"non-finite loss or gradient at step {first_bad} (a NaN/Inf loss, gradient or "
                f"updated parameter; config.nonfinite='stop'); "
                f"stopped at step {step}; the last good checkpoint is "
                f"{'step ' + str(kept) if kept is not None else 'none'} in "
                f"{checkpointer.directory}")

    try:
        step = start_step
        while step < experiment.total_steps:
            state, metrics = train_fn(state, next(batches))
            step += 1
            history.append(metrics)
            last = step == experiment.total_steps
            if step % config.log_every_steps == 0 or last:
                check_finite(step)
                means = _mean_metrics(history)
                history = []
                line, rate = progress.line(step, means)
                skipped = int(jax.device_get(state.skipped_steps))
                if primary:
                    logging.info("%s%s", line, f" | skipped {skipped}" if skipped else "")
                    writer.write(step, "train", {**means, "images_per_second": rate,
                                                 "skipped_steps": skipped})
            if config.eval_every_steps and step % config.eval_every_steps == 0 and not last:
                eval_metrics = evaluate(experiment, eval_fn, state.eval_variables(use_ema))
                if primary:
                    logging.info("eval at step %d: %s", step, eval_metrics)
                    writer.write(step, "eval", eval_metrics)
            if (config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0) \
                    or last:
                save(step)
            if stop.reached(step) and not last:
                save(step)
                checkpointer.wait()
                raise Preempted(f"SIGTERM: saved a checkpoint at step {step} in "
                                f"{checkpointer.directory}; rerun the same command to resume")
        checkpointer.wait()
        eval_metrics = evaluate(experiment, eval_fn, state.eval_variables(use_ema))
        loop_seconds = time.time() - loop_start
        if primary:
            logging.info("final eval at step %d: %s", step, eval_metrics)
            writer.write(step, "eval", eval_metrics)
    finally:
        stop.restore()
        writer.close()
        checkpointer.close()

    summary = {
        "model": config.model.name,
        "dataset": config.dataset.name,
        "method": "smh" if experiment.bundle.compressed else (
            "width" if config.model.width_multiplier != 1.0 else "dense"),
        "fraction": None if config_base.is_dense(config) else (
            config.smh.fraction or None),
        "target_params": config.smh.target_params if experiment.bundle.compressed else None,
        "pool": config.smh.pool if experiment.bundle.compressed else None,
        "init_from_dense": config.smh.init_from_dense or None,
        "width_multiplier": float(config.model.width_multiplier),
        "dense_params": accounting["dense_params"],
        "trainable_params": accounting["trainable_params"],
        "achieved_fraction": accounting["fraction"],
        "accuracy": eval_metrics["accuracy"],
        "top5": eval_metrics["top5"],
        "eval_loss": eval_metrics["loss"],
        "eval_examples": eval_metrics["examples"],
        "steps": int(step),
        "epochs": step / experiment.steps_per_epoch,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "skipped_steps": int(jax.device_get(state.skipped_steps)),
        "wall_seconds": time.time() - start_time,
        "loop_seconds": loop_seconds,
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "ema": use_ema,
    }
    if primary:
        with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return summary


# ----------------------------------------------------------------------------- eval


def restore_for_eval(config: ml_collections.ConfigDict, workdir: str,
                     step: Optional[int] = None) -> tuple[Experiment, TrainState, int]:
    """The experiment and the restored state of `step` (latest if None); refuses mismatches."""
    experiment = build_experiment(config)
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise UserError(f"--workdir {workdir!r} holds no checkpoints (no {directory})")
    checkpointer = checkpointing.Checkpointer(directory, max_to_keep=config.keep_checkpoints,
                                              async_save=False)
    try:
        steps = checkpointer.all_steps()
        if not steps:
            raise UserError(f"--workdir {workdir!r} holds no complete checkpoint")
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise UserError(f"--step {step} is not among the checkpoints in {directory}: "
                            f"{sorted(steps)}")
        checkpointer.check_compatible(step, experiment.meta)
        state, _ = checkpointer.restore(step, checkpointing.abstract_with_shardings(
            experiment.abstract_state, experiment.state_shardings))
    finally:
        checkpointer.close()
    return experiment, state, step

