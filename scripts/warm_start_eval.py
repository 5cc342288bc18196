"""Accuracy of a dense model projected onto SMH factors, before any fine-tuning.

    python scripts/warm_start_eval.py \
        --config=configs/resnet32_cifar10_smh.py:fast,npz=data_local/cifar10_jpeg.npz \
        --config.smh.fraction=0.1 --config.smh.init_from_dense=/tmp/r32_dense \
        --out=/tmp/r32_proj10.json

Builds the compressed model the config describes, projects the dense model of
config.smh.init_from_dense onto it (smh_jax/core/projection.py: truncated SVD of the
tiled, per-layer-normalized weights, least-squares scales, the dense BatchNorm), and
evaluates it on the config's eval split, exactly as train.py would start a warm-started
run. Prints and writes JSON: accuracy, top5, loss, the weights' relative error overall
and per tensor, n, M, trainable count, and how long the projection took. With
--bn_batches=K, also the accuracy after re-estimating the BatchNorm running statistics
(the dense model's no longer match the projected weights) over K training batches:
forward passes in train mode, no gradient, no weight change.
"""

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # runs as `python scripts/...` without installing
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import smh_jax  # noqa: E402
from smh_jax.formats import warm_start  # noqa: E402
from smh_jax.training import cli, trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Also write the JSON result here.")
flags.DEFINE_integer("bn_batches", 0,
                     "Also re-estimate the BatchNorm statistics with the projected weights "
                     "over this many training batches (forward passes, no gradient) and "
                     "evaluate again.")
config_flags.DEFINE_config_file("config", None, "An SMH config with smh.init_from_dense set.",
                                lock_config=True)


def recalibrate_batch_stats(experiment, variables: dict, batches: int) -> dict:
    """The running statistics of `batches` train-mode forward passes (weights unchanged)."""
    config, bundle = experiment.config, experiment.bundle
    collections = [c for c in variables if c != "params"]

    @jax.jit
    def update(variables, images):
        images = trainer.preprocess(images, None, experiment.info, jnp.dtype(config.model.dtype))
        _, new = bundle.module.apply(variables, images, train=True, mutable=collections,
                                     rngs={"dropout": jax.random.key(0)})
        return {**variables, **new}

    iterator = experiment.source.train_iterator(seed=config.seed,
                                                global_batch_size=config.batch_size)
    for _ in range(batches):
        variables = update(variables, jnp.asarray(next(iterator)["image"]))
    return variables


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    if not config.smh.init_from_dense:
        raise cli.UserError("config.smh.init_from_dense is empty; give the dense model to "
                            "project (a dense train.py workdir or an --export_dense dir)")
    experiment = trainer.build_experiment(config)
    start = time.time()
    abstract = experiment.abstract_state
    variables, errors = warm_start.warm_start(config.smh.init_from_dense, abstract.params,
                                              abstract.model_state)
    seconds = time.time() - start
    _, eval_fn = trainer.jit_steps(experiment)
    metrics = trainer.evaluate(experiment, eval_fn, variables)
    if FLAGS.bn_batches > 0:
        recalibrated = recalibrate_batch_stats(experiment, variables, FLAGS.bn_batches)
        after = trainer.evaluate(experiment, eval_fn, recalibrated)
        metrics.update({f"{k}_bn_recalibrated": v for k, v in after.items()
                        if k != "examples"}, bn_batches=FLAGS.bn_batches)
    info = smh_jax.accounting(variables["params"]["smh"])
    result = {
        **metrics, "model": config.model.name, "dataset": config.dataset.name,
        "init_from_dense": config.smh.init_from_dense, "fraction": config.smh.fraction,
        "target_params": config.smh.target_params, "n": info["n"], "M": info["M"],
        "trainable_params": info["trainable"], "dense_params": info["dense_params"],
        "relative_error": errors["overall"], "projection_seconds": seconds,
        "relative_error_per_tensor": errors["per_tensor"],
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    shown = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in result.items()
             if k != "relative_error_per_tensor"]
    print(cli.format_table(shown), flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    cli.run(main)
