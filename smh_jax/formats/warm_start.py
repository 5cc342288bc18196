"""Warm start from a dense model: load its variables and project them onto the factors.

`config.smh.init_from_dense=PATH` names an `eval.py --export_dense` directory or a dense
train.py workdir; the maths of the projection is `smh_jax.core.projection`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from smh_jax.core import projection, tree_paths
from smh_jax.errors import UserError
from smh_jax.linen.compress import PARAM_NAME, smh_params_of


def _restore_numpy(directory: str) -> dict[str, Any]:
    """An Orbax pytree checkpoint, restored on the host as numpy (any device count)."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(directory)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), dict(tree))
    return dict(checkpointer.restore(directory, args=ocp.args.PyTreeRestore(restore_args=tree)))


def load_dense_variables(path: str) -> dict[str, Any]:
    """{'params': ..., <collections>} of a dense model, as numpy arrays.

    `path` is an `eval.py --export_dense` directory (model.json + variables/) or a dense
    train.py workdir (its newest checkpoint; the EMA weights if the run kept them).
    """
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, "variables")) and os.path.isfile(
            os.path.join(path, "model.json")):
        return _restore_numpy(os.path.join(path, "variables"))
    checkpoints = os.path.join(path, "checkpoints")
    steps = sorted(int(s) for s in os.listdir(checkpoints) if s.isdigit()) if os.path.isdir(
        checkpoints) else []
    if not steps:
        raise UserError(
            f"config.smh.init_from_dense: {path!r} is neither an eval.py --export_dense "
            "directory (model.json + variables/) nor a train.py workdir with checkpoints")
    step_dir = os.path.join(checkpoints, str(steps[-1]))
    meta_file = os.path.join(step_dir, "meta", "metadata")
    if os.path.isfile(meta_file):
        with open(meta_file, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("smh"):
            raise UserError(
                f"config.smh.init_from_dense: {path!r} is the workdir of an SMH run; write its "
                "dense model with eval.py --export_dense=DIR and pass DIR")
    state = _restore_numpy(os.path.join(step_dir, "state"))
    if state.get("ema_params"):
        return {"params": state["ema_params"], **state["ema_model_state"]}
    return {"params": state["params"], **state["model_state"]}


def _match_collections(dense: Mapping[str, Any], like: Mapping[str, Any]) -> dict[str, Any]:
    """The dense model's non-param collections, checked against the compressed model's."""
    out = {}
    for collection, tree in like.items():
        if collection not in dense:
            raise UserError(f"dense variables: collection {collection!r} is missing")
        got = projection.flat_by_path(dense[collection])
        items = []
        for p, leaf in tree_paths.ordered_items(tree):
            key = tree_paths.path_str(p)
            if key not in got or tuple(np.shape(got[key])) != tuple(leaf.shape):
                raise UserError(f"dense variables: {collection}/{key} is missing or has shape "
                                f"{np.shape(got.get(key))}; expected {tuple(leaf.shape)}")
            items.append((p, np.asarray(got[key], leaf.dtype)))
        out[collection] = tree_paths.nest(items)
    return out


def warm_start(path: str, abstract_params: Any, abstract_model_state: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """({'params': {'smh': projected SMHParams}, <collections>}, relative_errors).

    The variables are what the trainer's init starts from; `abstract_params` are the
    compressed model's (shapes only) and its layout is reused as is, so the result has
    exactly the structure the jitted init produces.
    """
    layout = smh_params_of(abstract_params).layout
    dense = load_dense_variables(path)
    try:
        params = projection.project(layout, dense["params"])
    except UserError as e:
        raise UserError(f"config.smh.init_from_dense={path!r}: {e}") from None
    variables = {"params": {PARAM_NAME: params},
                 **_match_collections(dense, abstract_model_state)}
    return variables, projection.relative_errors(params, dense["params"])
