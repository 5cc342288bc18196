r"""Accuracy of a dense model projected onto SMH factors, before any fine-tuning.

    python scripts/warm_start_eval.py --config=configs/quickstart.py \
        --config.smh.fraction=0.25 --config.smh.init_from_dense=/tmp/qs_dense \
        --bn_batches=30 --out=/tmp/qs_proj25.json

Builds the compressed model the config describes, projects the dense model of
config.smh.init_from_dense onto it exactly as train.py would start a warm-started run,
and evaluates it on the config's eval split (smh_jax/experiments/warm_start_eval.py).
Prints and writes JSON: accuracy, top5, loss, the weights' relative error overall and
per tensor, n, M, trainable count, and how long the projection took.
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from smh_jax.experiments import warm_start_eval
from smh_jax.training import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Also write the JSON result here.")
flags.DEFINE_integer("bn_batches", 0,
                     "Also re-estimate the BatchNorm statistics with the projected weights "
                     "over this many training batches (forward passes, no gradient) and "
                     "evaluate again.")
config_flags.DEFINE_config_file("config", None, "An SMH config with smh.init_from_dense set.",
                                lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    result = warm_start_eval.evaluate_projection(FLAGS.config, FLAGS.bn_batches)
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
