"""Exports: the materialized dense model (`eval.py --export_dense=DIR`).

The directory holds an Orbax checkpoint of {'params', <other collections>} that the plain,
uncompressed architecture restores and applies directly, plus model.json describing
how to build that architecture from the registry (`ModelSpec.to_json`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

import smh_jax
from smh_jax.errors import UserError
from smh_jax.models.spec import ModelSpec, abstract_variables

MODEL_FILE = "model.json"
VARIABLES_DIR = "variables"


def directory_bytes(path: str) -> int:
    """Bytes of every file under `path` (what a checkpoint or export costs on disk)."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def write_arrays_and_json(directory: str, arrays_dir: str, arrays: Any, json_file: str,
                          document: dict[str, Any], indent: int) -> None:
    """An Orbax checkpoint of `arrays` in directory/arrays_dir (every process takes part)
    and `document` as directory/json_file (written by process 0 once the arrays are)."""
    os.makedirs(directory, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, arrays_dir), arrays)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        with open(os.path.join(directory, json_file), "w", encoding="utf-8") as f:
            json.dump(document, f, indent=indent)


def dense_variables(variables: dict[str, Any], compressed: bool) -> dict[str, Any]:
    """The plain model's variables: params materialized (float32) when compressed."""
    if not compressed:
        return variables
    params = smh_jax.materialize(smh_jax.smh_params_of(variables["params"]), jnp.float32)
    return {**variables, "params": params}


def export_dense(directory: str, variables: dict[str, Any], spec: ModelSpec) -> int:
    """Writes the dense variables and model.json; returns the bytes written."""
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, VARIABLES_DIR)):
        raise UserError(f"--export_dense {directory!r} already holds an export; choose a new "
                        "directory (nothing was overwritten)")
    write_arrays_and_json(directory, VARIABLES_DIR, variables, MODEL_FILE, spec.to_json(),
                          indent=2)
    return directory_bytes(directory)


def read_spec(directory: str) -> ModelSpec:
    """The model spec of an `export_dense` directory (its model.json)."""
    path = os.path.join(os.path.abspath(directory), MODEL_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UserError(f"{directory!r} is not a dense export ({MODEL_FILE}: {e.strerror})"
                        ) from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    return ModelSpec.from_json(data, where=MODEL_FILE)


def load_dense(directory: str, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict[str, Any]]:
    """The plain architecture and its variables, from an `export_dense` directory."""
    module = read_spec(directory).create()
    abstract = abstract_variables(module, input_shape)
    variables = ocp.StandardCheckpointer().restore(
        os.path.join(os.path.abspath(directory), VARIABLES_DIR), abstract)
    return module, variables
