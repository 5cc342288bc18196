"""Evaluates a checkpoint of a train.py run; optionally exports the dense model.

    python eval.py --config=configs/resnet32_cifar10_smh.py --workdir=/tmp/resnet32_smh
    python eval.py ... --step=20000 --export_dense=/tmp/resnet32_dense
    python eval.py ... --export_smh=/tmp/resnet32_artifact    # smh_jax.formats.artifact.load(DIR)

Writes WORKDIR/eval.json (accuracy, top5, loss, step, trainable_params, checkpoint_bytes,
...). The config must describe the run that wrote the checkpoint (same model, dataset and
SMH layout); a mismatch is refused with the differing field named.
"""

import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from smh_jax.formats import artifact, dense_export
from smh_jax.training import cli, trainer
from smh_jax.training import experiment as experiment_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The train.py workdir holding checkpoints/.")
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
flags.DEFINE_string("export_dense", None,
                    "Also write the materialized dense model here (Orbax + model.json).")
flags.DEFINE_string("export_smh", None,
                    "Also write the compressed artifact here (factors, scales, unhashed "
                    "params, batch stats, layout; smh_jax.formats.artifact.load rebuilds the "
                    "model).")
flags.DEFINE_enum("export_smh_dtype", "float32", list(artifact.FACTOR_DTYPES),
                  "Storage dtype of the factors in --export_smh (loaded back as float32).")
flags.DEFINE_enum("weights", "auto", ["auto", "ema", "raw"],
                  "Evaluate the EMA weights (auto: when the run trained with EMA).")
config_flags.DEFINE_config_file("config", None, "The config the run was trained with.",
                                lock_config=True)
cli.define_distributed_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.initialize_distributed()
    config = FLAGS.config
    experiment, state, step = trainer.restore_for_eval(config, FLAGS.workdir, FLAGS.step)
    use_ema = FLAGS.weights == "ema" or (FLAGS.weights == "auto" and bool(config.ema_decay))
    if use_ema and not config.ema_decay:
        raise cli.UserError("--weights=ema: this run was trained without EMA "
                            "(config.ema_decay is 0)")
    variables = state.eval_variables(use_ema)
    _, eval_fn = experiment_lib.jit_steps(experiment)
    metrics = trainer.evaluate(experiment, eval_fn, variables)
    accounting = experiment_lib.parameter_accounting(experiment)
    checkpoint_dir = os.path.join(FLAGS.workdir, "checkpoints", str(step))
    result = {
        **metrics, "step": step, "weights": "ema" if use_ema else "raw",
        "model": config.model.name, "dataset": config.dataset.name,
        "trainable_params": accounting["trainable_params"],
        "hashed_weights": accounting["smh"]["hashed_weights"] if accounting["smh"] else 0,
        "dense_params": accounting["dense_params"],
        "fraction": accounting["fraction"],
        "checkpoint_bytes": dense_export.directory_bytes(checkpoint_dir),
        # The dense model's float32 weights, for comparison with checkpoint_bytes.
        "dense_params_bytes": 4 * accounting["dense_params"],
    }
    if FLAGS.export_smh:
        if not experiment.compressed:
            raise cli.UserError("--export_smh: this run is dense (config.smh.fraction and "
                                "target_params unset); use --export_dense")
        sizes = artifact.save(FLAGS.export_smh, experiment.module, jax.device_get(variables),
                              experiment.spec, experiment_lib.input_shape(experiment.info),
                              FLAGS.export_smh_dtype)
        result.update({"export_smh": FLAGS.export_smh, "export_smh_bytes": sizes["bytes"],
                       "export_smh_dtype": FLAGS.export_smh_dtype,
                       "ideal_bytes": sizes["ideal_bytes"]})
    if FLAGS.export_dense:
        dense = dense_export.dense_variables(jax.device_get(variables), experiment.compressed)
        result["export_dense"] = FLAGS.export_dense
        result["export_dense_bytes"] = dense_export.export_dense(FLAGS.export_dense, dense,
                                                                 experiment.spec)
    if jax.process_index() == 0:
        with open(os.path.join(FLAGS.workdir, "eval.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    print(cli.format_table([(k, str(v)) for k, v in result.items()]), flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    cli.run(main)
