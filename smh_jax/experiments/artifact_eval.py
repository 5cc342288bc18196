"""Evaluates compressed artifacts (eval.py --export_smh) rebuilt from the artifact alone.

The config only supplies the evaluation data (dataset, eval split, batch size, compute
dtype); the model, its layout and every variable come from `artifact.load(DIR)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import ml_collections

from smh_jax.formats import artifact
from smh_jax.training import experiment as experiment_lib
from smh_jax.training import trainer


def evaluate(experiment: experiment_lib.Experiment, directory: str,
             per_layer: bool) -> dict[str, float]:
    """Accuracy, top5, loss of the artifact in `directory` on the experiment's eval split."""
    module, variables = artifact.load(directory, per_layer=per_layer)
    _, eval_fn = experiment_lib.jit_steps(dataclasses.replace(experiment, module=module))
    return trainer.evaluate(experiment, eval_fn, variables)


def evaluate_artifacts(config: ml_collections.ConfigDict, directories: Sequence[str],
                       per_layer: bool = False,
                       recast: Optional[str] = None) -> list[dict[str, Any]]:
    """One result per artifact: accuracy, bytes on disk, factor dtype, trainable count.

    `per_layer`: also the accuracy with per-layer materialization. `recast`: also write
    DIR_<dtype>, a copy of each artifact with its factors stored in that dtype, and
    evaluate it.
    """
    experiment = experiment_lib.build_experiment(config)
    directories = list(directories)
    if recast:
        for source in list(directories):
            target = f"{source.rstrip('/')}_{recast}"
            artifact.recast(source, target, recast)
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
        if per_layer:
            lean = evaluate(experiment, directory, per_layer=True)
            result.update({f"{k}_per_layer": v for k, v in lean.items() if k != "examples"})
        results.append(result)
    return results
