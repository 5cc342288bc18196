"""The training loop: train_and_evaluate (resumable, preemptible) and restore_for_eval.

Modeled on Flax's examples/imagenet `train.py` (`train_and_evaluate`), with the parts
that are dated there done the current way: `jax.jit` over a `Mesh` with
`NamedSharding`s, the state created directly sharded, buffers donated, Orbax for every
checkpoint including the data-iterator position. The pieces live beside it:
`experiment` (what a config builds), `steps` (train and eval steps), `preemption`
(SIGTERM).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import smh_jax
from smh_jax.errors import UserError
from smh_jax.training import checkpointing, config_base, sharding
from smh_jax.training.experiment import (
    Experiment,
    build_experiment,
    initial_state,
    jit_steps,
    parameter_accounting,
)
from smh_jax.training.metrics_writer import MetricsWriter, Progress
from smh_jax.training.preemption import Preempted, SigtermFlag
from smh_jax.training.train_state import TrainState


class TrainingError(RuntimeError):
    """A run that cannot continue (non-finite loss with nonfinite='stop')."""


# ----------------------------------------------------------------------------- loop


class DevicePrefetch:
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
    batches = DevicePrefetch(train_iter, sharding.batch_sharding(experiment.mesh))
    writer = MetricsWriter(workdir, enabled=primary)
    progress = Progress(experiment.total_steps, config.batch_size, start_step)
    stop = SigtermFlag(
        sync_point=checkpointer.reached_preemption if jax.process_count() > 1 else None)
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
        "method": "smh" if experiment.compressed else (
            "width" if config.model.width_multiplier != 1.0 else "dense"),
        "fraction": None if config_base.is_dense(config) else (
            config.smh.fraction or None),
        "target_params": config.smh.target_params if experiment.compressed else None,
        "pool": config.smh.pool if experiment.compressed else None,
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

