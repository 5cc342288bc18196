"""The compressed artifact: only what rebuilds an SMH model, loadable without its config.

    artifact.save(DIR, compressed_module, variables, model_spec, input_shape)
    module, variables = artifact.load(DIR)          # no config, no checkpoint
    logits = module.apply(variables, x, train=False)

DIR holds `smh.json` (format version, the model spec (`ModelSpec.to_json`), the SMH
options, the full layout: hashed paths in creation order with shapes, offsets and init
statistics, every parameter path, pool with n and M, index store, modifiers, scale
parameterization, ..., and the shapes and dtypes of the stored arrays) and `arrays/`, an
Orbax checkpoint (the project's one checkpoint tool, default settings) of the factors,
the per-layer scales, the unhashed parameters and the other collections (batch
statistics). Optimizer state, EMA copies and the data-iterator position, which a
training checkpoint also holds, are left out. `factor_dtype='bfloat16'` stores the
factors in half the bytes; they are cast back to float32 on load.

`load` checks the metadata against the architecture the registry builds (every path and
shape) and against the stored arrays, so a missing or tampered field is a `UserError`
naming it rather than a wrong model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from smh_jax.core import tree_paths
from smh_jax.core.layout import Layout
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams
from smh_jax.core.pools import HashPool, KroneckerPool, LayerHashPool, MetaPool, ProductPool
from smh_jax.errors import UserError
from smh_jax.formats.dense_export import directory_bytes, write_arrays_and_json
from smh_jax.linen.compress import PARAM_NAME, SMH, smh_params_of
from smh_jax.models.spec import ModelSpec, abstract_variables, count_params

FORMAT = "smh_jax.artifact"
VERSION = 1
METADATA_FILE = "smh.json"
ARRAYS_DIR = "arrays"
FACTOR_DTYPES = ("float32", "bfloat16")
_POOLS = {"product": ProductPool, "kronecker": KroneckerPool, "hash": HashPool,
          "hashnet": LayerHashPool, "meta": MetaPool}


# ----------------------------------------------------------------------------- layout <-> JSON
#
# Written and read field by field from the dataclasses themselves (Layout, HashedTensor,
# the pools), so a field added to them travels without a change here; a field missing
# from an older file takes the dataclass's default if it has one. Fields marked
# `metadata={"json": False}` (a parameter's Flax metadata box) are not written.


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.metadata.get("json", True)}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def _is_pool_union(hint: Any) -> bool:
    return typing.get_origin(hint) is Union and all(
        a in _POOLS.values() for a in typing.get_args(hint))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` (as JSON gives it) as the type `hint` names: tuples, scalars, dataclasses."""
    if _is_pool_union(hint):
        return _pool_from_json(value, where)
    if dataclasses.is_dataclass(hint):
        return _dataclass_from_json(hint, value, where)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{METADATA_FILE}: {where} is not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise UserError(f"{METADATA_FILE}: {where} has {len(value)} entries, expected "
                            f"{len(args)}")
        return tuple(_coerce(v, a, f"{where}[{i}]")
                     for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint in (int, float, str, bool):
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise UserError(f"{METADATA_FILE}: {where} is {value!r}, not a "
                            f"{hint.__name__}") from None
    return value


def _dataclass_from_json(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{METADATA_FILE}: {where} is not an object")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    unknown = sorted(set(data) - {f.name for f in fields})
    if unknown:
        raise UserError(f"{METADATA_FILE}: {where}.{unknown[0]} is not a field of "
                        f"{cls.__name__}")
    values = {}
    for f in fields:
        if f.name in data:
            values[f.name] = _coerce(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif (f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING):  # type: ignore[misc]
            raise UserError(f"{METADATA_FILE}: {where}.{f.name} is missing")
    return cls(**values)


def _pool_from_json(data: Any, where: str) -> Any:
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = _POOLS.get(kind)
    if cls is None:
        raise UserError(f"{METADATA_FILE}: {where}.kind: {kind!r} is not one of "
                        f"{', '.join(_POOLS)}")
    return _dataclass_from_json(cls, data, where)


def layout_to_json(layout: Layout) -> dict[str, Any]:
    """Every field of the layout, JSON-ready (floats round-trip exactly)."""
    return _to_json(layout)


def _field(data: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise UserError(f"{METADATA_FILE}: {where}{key} is missing")
    return data[key]


def _with_tuple_keys(data: Any) -> Any:
    """Files written before parameter keys were tuples name them by '/'-joined paths."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if isinstance(data.get("hashed"), list):
        data["hashed"] = [
            {**{k: v for k, v in t.items() if k != "path"}, "key": t["path"].split("/")}
            if isinstance(t, dict) and isinstance(t.get("path"), str) else t
            for t in data["hashed"]]
    if isinstance(data.get("param_order"), list):
        data["param_order"] = [
            [entry[0].split("/"), *entry[1:]]
            if isinstance(entry, list) and entry and isinstance(entry[0], str) else entry
            for entry in data["param_order"]]
    return data


def layout_from_json(data: dict[str, Any]) -> Layout:
    """The Layout back from `layout_to_json`; UserError naming a missing/inconsistent field."""
    layout = _dataclass_from_json(Layout, _with_tuple_keys(data), "layout")
    offset = 0
    for i, tensor in enumerate(layout.hashed):
        if tensor.offset != offset:
            raise UserError(f"{METADATA_FILE}: layout.hashed[{i}].offset is {tensor.offset} "
                            f"for {tensor.path!r}; the tensors before it end at {offset}")
        offset += tensor.size
    if [t.key for t in layout.hashed] != [p for p, h in layout.param_order if h]:
        raise UserError(f"{METADATA_FILE}: layout.param_order does not list the hashed "
                        "tensors of layout.hashed, in that order")
    if layout.index_store == "basic" and layout.pool.virtual_size < layout.num_hashed:
        raise UserError(f"{METADATA_FILE}: layout.pool generates {layout.pool.virtual_size} "
                        f"virtual weights, fewer than the {layout.num_hashed} hashed ones")
    return layout


def _options_to_json(options: SMHOptions) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(options).items()}


def _options_from_json(data: dict[str, Any]) -> SMHOptions:
    names = {f.name for f in dataclasses.fields(SMHOptions)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{METADATA_FILE}: options.{unknown[0]} is not an SMH option")
    return SMHOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# ----------------------------------------------------------------------------- save


def _nbytes(tree: Any) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def save(directory: str, module: SMH, variables: dict[str, Any], spec: ModelSpec,
         input_shape: tuple[int, ...], factor_dtype: str = "float32") -> dict[str, Any]:
    """Writes the artifact; returns its sizes: bytes (on disk), array_bytes, ideal_bytes.

    `spec` is the architecture `module` wraps (as `eval.py --export_dense` writes it in
    model.json); `input_shape` an example input's shape (NHWC), used to check the layout
    on load.
    """
    if factor_dtype not in FACTOR_DTYPES:
        raise UserError(f"factor dtype {factor_dtype!r} is not one of {', '.join(FACTOR_DTYPES)}")
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, METADATA_FILE)):
        raise UserError(f"--export_smh {directory!r} already holds an artifact; choose a new "
                        "directory (nothing was overwritten)")
    params = jax.device_get(smh_params_of(variables["params"]))
    pool = {k: np.asarray(v).astype(factor_dtype) for k, v in params.pool.items()}
    arrays = {"pool": pool, "modifiers": params.modifiers, "unhashed": params.unhashed,
              **{c: jax.device_get(t) for c, t in variables.items() if c != "params"}}
    array_info = {
        tree_paths.path_str(p): {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
        for p, v in tree_paths.ordered_items(arrays)}
    trainable = count_params(params)
    metadata = {
        "format": FORMAT, "version": VERSION,
        "model": spec.to_json(),
        "input_shape": [int(d) for d in input_shape],
        "options": _options_to_json(module.options),
        "layout": layout_to_json(params.layout),
        "collections": [c for c in variables if c != "params"],
        "arrays": array_info,
        "trainable_params": int(trainable),
    }
    write_arrays_and_json(directory, ARRAYS_DIR, arrays, METADATA_FILE, metadata, indent=1)
    return {"bytes": directory_bytes(directory), "array_bytes": _nbytes(arrays),
            "ideal_bytes": 4 * int(trainable), "trainable_params": int(trainable),
            "factor_dtype": factor_dtype}


# ----------------------------------------------------------------------------- load


def read_metadata(directory: str) -> dict[str, Any]:
    """smh.json of an artifact, with its format and version checked."""
    path = os.path.join(os.path.abspath(directory), METADATA_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{directory!r} is not an SMH artifact (no {METADATA_FILE})")
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise UserError(f"{path}: format is {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("version") != VERSION:
        raise UserError(f"{path}: version {metadata.get('version')!r} is not supported "
                        f"(this code reads version {VERSION})")
    return metadata


def _check_against_model(layout: Layout, dense: dict[str, Any]) -> None:
    """Every hashed and unhashed path and shape of the layout against the architecture."""
    shapes = {tree_paths.path_str(p): tuple(v.shape)
              for p, v in tree_paths.ordered_items(dense["params"])}
    hashed = {t.path: t.shape for t in layout.hashed}
    listed = [tree_paths.path_str(p) for p, _ in layout.param_order]
    for path in listed:
        if path not in shapes:
            raise UserError(f"{METADATA_FILE}: layout names {path!r}, which the model does not "
                            "have")
        if path in hashed and hashed[path] != shapes[path]:
            raise UserError(f"{METADATA_FILE}: layout gives {path!r} shape {hashed[path]}; the "
                            f"model's is {shapes[path]}")
    extra = sorted(set(shapes) - set(listed))
    if extra:
        raise UserError(f"{METADATA_FILE}: layout.param_order lacks the model's {extra[0]!r}")


def _restore_target(layout: Layout, metadata: dict[str, Any], dense: dict[str, Any]) -> dict:
    """Shapes and dtypes the arrays must have, from the layout and the model (not the file)."""
    hashed = {t.path for t in layout.hashed}
    unhashed = [(p, v) for p, v in tree_paths.ordered_items(dense["params"])
                if tree_paths.path_str(p) not in hashed]
    count = len(layout.hashed)
    stored = {k: v.get("dtype") for k, v in _field(metadata, "arrays", "").items()}
    pool_shapes = jax.eval_shape(lambda: layout.pool.init(jax.random.key(0), 1.0, False))
    target = {
        "pool": {k: jax.ShapeDtypeStruct(v.shape, jnp.dtype(stored.get(f"pool/{k}", "float32")))
                 for k, v in pool_shapes.items()},
        "modifiers": {m: jax.ShapeDtypeStruct((count,), jnp.float32)
                      for m in _learnable(layout)},
        "unhashed": tree_paths.nest(unhashed),
    }
    for collection in _field(metadata, "collections", ""):
        if collection not in dense:
            raise UserError(f"{METADATA_FILE}: collections lists {collection!r}, which the "
                            "model does not have")
        target[collection] = dense[collection]
    return target


def _learnable(layout: Layout) -> tuple[str, ...]:
    from smh_jax.core.modifiers import learnable

    return learnable(layout)


def _check_arrays(directory: str, target: dict[str, Any]) -> None:
    """The stored arrays' shapes against the target's, naming the first mismatch."""
    import orbax.checkpoint as ocp

    metadata = ocp.StandardCheckpointer().metadata(directory)
    stored = {tree_paths.path_str(p): tuple(m.shape) for p, m in
              tree_paths.ordered_items(dict(getattr(metadata, "item_metadata", metadata)))}
    for p, leaf in tree_paths.ordered_items(target):
        path = tree_paths.path_str(p)
        if path not in stored:
            raise UserError(f"{directory}: the stored arrays lack {path!r}")
        if stored[path] != tuple(leaf.shape):
            raise UserError(f"{directory}: stored {path!r} has shape {stored[path]}; the "
                            f"metadata implies {tuple(leaf.shape)}")


def load(directory: str, per_layer: bool = False) -> tuple[SMH, dict[str, Any]]:
    """(module, variables) rebuilt from the artifact alone; module.apply(variables, x, ...).

    `per_layer=True` returns the module that materializes one layer at a time.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    metadata = read_metadata(directory)
    spec = ModelSpec.from_json(_field(metadata, "model", ""), where=f"{METADATA_FILE}: model")
    base = spec.create()
    layout = layout_from_json(_field(metadata, "layout", ""))
    options = _options_from_json(_field(metadata, "options", ""))
    dense = abstract_variables(base, tuple(_field(metadata, "input_shape", "")))
    _check_against_model(layout, dense)
    target = _restore_target(layout, metadata, dense)
    arrays_dir = os.path.join(directory, ARRAYS_DIR)
    if not os.path.isdir(arrays_dir):
        raise UserError(f"{directory!r} lacks its arrays ({ARRAYS_DIR}/)")
    _check_arrays(arrays_dir, target)
    device = jax.devices()[0]
    with_sharding = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                       sharding=jax.sharding.SingleDeviceSharding(device)),
        target)
    arrays = ocp.StandardCheckpointer().restore(arrays_dir, with_sharding)
    params = SMHParams(pool={k: v.astype(jnp.float32) for k, v in arrays["pool"].items()},
                       modifiers=dict(arrays["modifiers"]), unhashed=arrays["unhashed"],
                       layout=layout)
    variables = {"params": {PARAM_NAME: params},
                 **{c: arrays[c] for c in metadata["collections"]}}
    return SMH(model=base, options=options, per_layer=per_layer), variables


def recast(source: str, destination: str, factor_dtype: str) -> dict[str, Any]:
    """A copy of artifact `source` with the factors stored in `factor_dtype` (returns sizes).

    E.g. the bfloat16 copy of a float32 export, without the training checkpoint. From a
    bfloat16 artifact back to float32 the factors stay bfloat16-rounded.
    """
    metadata = read_metadata(source)
    module, variables = load(source)
    return save(destination, module, variables, ModelSpec.from_json(metadata["model"]),
                tuple(metadata["input_shape"]), factor_dtype)

