r"""Evaluates compressed artifacts (eval.py --export_smh) rebuilt from the artifact alone.

    python scripts/artifact_eval.py --config=configs/quickstart.py \
        --artifacts=/tmp/qs_f32,/tmp/qs_bf16 --per_layer --out=/tmp/artifacts.json

The config only supplies the evaluation data (dataset, eval split, batch size, compute
dtype); the model, its layout and every variable come from the artifact
(smh_jax/experiments/artifact_eval.py). For each artifact: accuracy, top5, loss, bytes
on disk, factor dtype; with --per_layer also the accuracy with per-layer
materialization; with --recast=bfloat16 also a copy of each artifact with bfloat16
factors (DIR_bfloat16), written and evaluated.
"""

import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from smh_jax.experiments import artifact_eval
from smh_jax.training import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("artifacts", None, "Artifact directories (eval.py --export_smh).")
flags.DEFINE_bool("per_layer", False, "Also evaluate with per-layer materialization.")
flags.DEFINE_string("recast", None, "Also write and evaluate DIR_<dtype>, a copy of each "
                    "artifact with its factors stored in this dtype (e.g. bfloat16).")
flags.DEFINE_string("out", None, "Also write the JSON result here.")
config_flags.DEFINE_config_file("config", None, "Supplies the evaluation data.",
                                lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    results = artifact_eval.evaluate_artifacts(FLAGS.config, FLAGS.artifacts,
                                               per_layer=FLAGS.per_layer, recast=FLAGS.recast)
    for result in results:
        print(cli.format_table([(k, str(v)) for k, v in result.items()]), flush=True)
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w", encoding="utf-8") as f:
            json.dump({"device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "artifacts"])
    cli.run(main)
