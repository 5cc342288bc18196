"""Accuracy of a dense model projected onto SMH factors, before any fine-tuning.

Builds the compressed model a config describes, projects the dense model of
config.smh.init_from_dense onto it (smh_jax/core/projection.py: truncated SVD of the
tiled, per-layer-normalized weights, least-squares scales, the dense BatchNorm) exactly
as train.py starts a warm-started run, and evaluates it on the config's eval split.
Optionally also after re-estimating the BatchNorm running statistics (the dense model's
no longer match the projected weights) over K training batches: forward passes in
train mode, no gradient, no weight change.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import smh_jax
from smh_jax.errors import UserError
from smh_jax.formats import warm_start
from smh_jax.training import experiment as experiment_lib
from smh_jax.training import steps, trainer


def recalibrate_batch_stats(experiment: experiment_lib.Experiment, variables: dict,
                            batches: int) -> dict:
    """The running statistics of `batches` train-mode forward passes (weights unchanged)."""
    config, module = experiment.config, experiment.module
    collections = [c for c in variables if c != "params"]

    @jax.jit
    def update(variables, images):
        images = steps.preprocess(images, None, experiment.info, jnp.dtype(config.model.dtype))
        _, new = module.apply(variables, images, train=True, mutable=collections,
                              rngs={"dropout": jax.random.key(0)})
        return {**variables, **new}

    iterator = experiment.source.train_iterator(seed=config.seed,
                                                global_batch_size=config.batch_size)
    for _ in range(batches):
        variables = update(variables, jnp.asarray(next(iterator)["image"]))
    return variables


def evaluate_projection(config: ml_collections.ConfigDict, bn_batches: int = 0
                        ) -> dict[str, Any]:
    """Accuracy, top5, loss of the projection (and after BatchNorm re-estimation), the
    weights' relative error overall and per tensor, n, M, trainable count, seconds."""
    if not config.smh.init_from_dense:
        raise UserError("config.smh.init_from_dense is empty; give the dense model to "
                        "project (a dense train.py workdir or an --export_dense dir)")
    experiment = experiment_lib.build_experiment(config)
    start = time.time()
    abstract = experiment.abstract_state
    variables, errors = warm_start.warm_start(config.smh.init_from_dense, abstract.params,
                                              abstract.model_state)
    seconds = time.time() - start
    _, eval_fn = experiment_lib.jit_steps(experiment)
    metrics = trainer.evaluate(experiment, eval_fn, variables)
    if bn_batches > 0:
        recalibrated = recalibrate_batch_stats(experiment, variables, bn_batches)
        after = trainer.evaluate(experiment, eval_fn, recalibrated)
        metrics.update({f"{k}_bn_recalibrated": v for k, v in after.items()
                        if k != "examples"}, bn_batches=bn_batches)
    info = smh_jax.accounting(variables["params"]["smh"])
    return {
        **metrics, "model": config.model.name, "dataset": config.dataset.name,
        "init_from_dense": config.smh.init_from_dense, "fraction": config.smh.fraction,
        "target_params": config.smh.target_params, "n": info["n"], "M": info["M"],
        "trainable_params": info["trainable"], "dense_params": info["dense_params"],
        "relative_error": errors["overall"], "projection_seconds": seconds,
        "relative_error_per_tensor": errors["per_tensor"],
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
