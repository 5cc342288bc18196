"""Evaluates compressed artifacts (eval.py --export_smh) rebuilt from the artifact alone.

    python scripts/artifact_eval.py --config=configs/quickstart.py \
        --artifacts=/tmp/qs_f32,/tmp/qs_bf16 --per_layer --out=/tmp/artifacts.json

The config only supplies the evaluation data (dataset, eval split, batch size, compute
dtype); the model, its layout and every variable come from `smh_jax.formats.artifact.load(DIR)`.
For each artifact: accuracy, top5, loss, bytes on disk, factor dtype; with --per_layer
also the accuracy of the same artifact with per-layer materialization; with
--recast=bfloat16 also a copy of each artifact with bfloat16 factors (DIR_bfloat16),
written and evaluated: the accuracy change of bfloat16 factor storage.
"""

import dataclasses
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # runs as `python scripts/...` without installing
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from smh_jax.formats import artifact  # noqa: E402
from smh_jax.training import cli, trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("artifacts", None, "Artifact directories (eval.py --export_smh).")
flags.DEFINE_bool("per_layer", False, "Also evaluate with per-layer materialization.")
flags.DEFINE_string("recast", None, "Also write and evaluate DIR_<dtype>, a copy of each "
                    "artifact with its factors stored in this dtype (e.g. bfloat16).")
flags.DEFINE_string("out", None, "Also write the JSON result here.")
config_flags.DEFINE_config_file("config", None, "Supplies the evaluation data.",
                                lock_config=True)


def evaluate(experiment, directory: str, per_layer: bool) -> dict:
    module, variables = artifact.load(directory, per_layer=per_layer)
    bundle = dataclasses.replace(experiment.bundle, module=module, compressed=True)
    _, eval_fn = trainer.jit_steps(dataclasses.replace(experiment, bundle=bundle))
    return trainer.evaluate(experiment, eval_fn, variables)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    experiment = trainer.build_experiment(FLAGS.config)
    directories = list(FLAGS.artifacts)
    if FLAGS.recast:
        for source in FLAGS.artifacts:
            target = f"{source.rstrip('/')}_{FLAGS.recast}"
            artifact.recast(source, target, FLAGS.recast)
            directories.append(target)
    results = []
    for directory in directories:
        metadata = artifact.read_metadata(directory)
        dtypes = {v["dtype"] for k, v in metadata["arrays"].items() if k.startswith("pool/")}
        result = {"artifact": directory, "bytes": artifact.directory_bytes(directory),
                  "factor_dtype": ",".join(sorted(dtypes)),
                  "trainable_params": metadata["trainable_params"],
                  "ideal_bytes": 4 * metadata["trainable_params"],
                  **evaluate(experiment, directory, per_layer=False)}
        if FLAGS.per_layer:
            lean = evaluate(experiment, directory, per_layer=True)
            result.update({f"{k}_per_layer": v for k, v in lean.items() if k != "examples"})
        results.append(result)
        print(cli.format_table([(k, str(v)) for k, v in result.items()]), flush=True)
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w", encoding="utf-8") as f:
            json.dump({"device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "artifacts"])
    cli.run(main)
