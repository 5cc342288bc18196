"""The NNX wrapper: compress any `flax.nnx` Module without touching its code.

    compressed = smh_jax.nnx.compress(lambda rngs: Net(..., rngs=rngs), fraction=0.25,
                                      rngs=nnx.Rngs(0))
    y = compressed(x)                   # the model's own arguments
    dense = compressed.materialize()    # dense parameter tree, in creation order
    print(compressed.summary())         # N, n, M, per-tensor slices, fraction

`compress` takes the function that builds the model from an `nnx.Rngs` (a class whose
constructor takes `rngs=` will do), not a built model: SMH tiles the hashed tensors in
the order the model *creates* them, which only its construction shows (recording.py).
The options, their validation and the layout rules are the linen wrapper's, so the same
network gets the same layout either way. The result is an `nnx.Module` holding:

- `pool`, `modifiers`: the factors and the per-tensor scales (`nnx.Param`s);
- `model`: the wrapped model itself, each hashed parameter replaced by a static
  `HashedSlot` (path, shape, dtype); its unhashed parameters, batch statistics, Rngs and
  other Variables stay where the model keeps them, so `compressed.train()` / `.eval()`,
  `nnx.reseed(compressed, dropout=...)` and `nnx.state(compressed, nnx.BatchStat)` act
  on them as on the model;
- `layout`: the static layout (`smh_jax.core.layout.Layout`).

A call materializes every hashed tensor (one A @ B), puts them into a shallow copy of
the model (`nnx.merge(*nnx.split(model))`: new module objects around the same
Variables, so batch statistics and RNG counters update in `compressed.model`) and runs
the copy. Nothing else is mutated, so the usual NNX rules hold: `nnx.jit`, `nnx.grad`,
`nnx.Optimizer(compressed, tx, wrt=nnx.Param)`, `nnx.split`/`nnx.merge` under
`jax.jit`, `nnx.capture` for intermediates, and Orbax on `nnx.state(compressed)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from smh_jax.core import accounting as accounting_lib
from smh_jax.core import materialize as materialize_lib
from smh_jax.core import tree_paths
from smh_jax.core.layout import Layout, build_layout, select_hashed
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams, init_params
from smh_jax.errors import UserError
from smh_jax.linen import init_sampling
from smh_jax.nnx import recording


@dataclasses.dataclass(frozen=True)
class HashedSlot:
    """Where a hashed parameter was: a call puts its materialized tensor here."""

    key: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    variable_type: type
    metadata: tuple[tuple[str, Any], ...]

    def __repr__(self) -> str:
        return (f"HashedSlot({tree_paths.path_str(self.key)!r}, shape={self.shape}, "
                f"dtype={self.dtype}: a slice of A @ B)")

    def variable(self, value: jax.Array) -> nnx.Variable:
        """The parameter as the model created it (type and metadata), holding `value`."""
        return self.variable_type(value, **dict(self.metadata))


def _frozen(value: Any) -> Any:
    """Metadata as a static (hashable) value: lists and dicts become tuples."""
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _set_child(parent: Any, key: Any, value: Any, where: tuple[str, ...]) -> None:
    """Puts `value` at `parent[key]`: a slot as a static attribute, a Variable as data."""
    if not isinstance(parent, nnx.Pytree):  # a plain list or dict has no static entries
        raise UserError(f"smh_jax.nnx: the parameter {tree_paths.path_str(where)!r} sits in "
                        f"a plain {type(parent).__name__}; keep hashed parameters in modules, "
                        "nnx.List or nnx.Dict")
    marked = nnx.data(value) if isinstance(value, nnx.Variable) else nnx.static(value)
    nnx.graph.get_node_impl(parent).set_key(parent, key, marked)


def _children(model: Any):
    """(parent, key, child) for every immediate child of every graph node of `model`.

    Unlike `nnx.graph.iter_graph`, a shared child is listed at each of its places.
    """
    for _, node in nnx.graph.iter_graph(model):
        impl = nnx.graph.get_node_impl(node) if nnx.graph.is_node(node) else None
        if impl is None:
            continue
        for key, child in impl.node_dict(node).items():
            yield node, key, child


def _variables(tree: Any) -> Any:
    return jax.tree.map(nnx.Param, tree)


def _values(tree: Any) -> Any:
    return jax.tree.map(lambda v: v.get_value(), tree,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


class SMH(nnx.Module):
    """An NNX model whose hashed weights are slices of one virtual matrix A @ B.

    Made by `compress` (module doc); calling it calls the wrapped model.
    """

    def __init__(self, model: nnx.Module, layout: Layout, pool: Any, modifiers: Any):
        self.model = model
        self.layout = layout
        self.pool = nnx.data(_variables(pool))
        self.modifiers = nnx.data(_variables(modifiers))

    def smh_params(self) -> SMHParams:
        """The linen wrapper's `SMHParams` of this model (current values; layout static)."""
        flat = {recording.key_of(path): variable.get_value()
                for path, variable in recording.parameters(self.model)}
        unhashed = [(key, flat[key]) for key, hashed in self.layout.param_order if not hashed]
        return SMHParams(pool=_values(self.pool), modifiers=_values(self.modifiers),
                         unhashed=tree_paths.nest(unhashed), layout=self.layout)

    def dense_model(self) -> nnx.Module:
        """The wrapped model with its hashed parameters materialized (one A @ B).

        A shallow copy: new module objects around the model's own Variables, plus new
        `nnx.Param`s (type and metadata as created) holding the materialized tensors.
        """
        params = SMHParams(pool=_values(self.pool), modifiers=_values(self.modifiers),
                           unhashed={}, layout=self.layout)
        tensors = materialize_lib.hashed_tensors(params)
        model = nnx.merge(*nnx.split(self.model))
        placed: dict[tuple[str, ...], nnx.Variable] = {}
        for parent, key, child in list(_children(model)):
            if isinstance(child, HashedSlot):
                if child.key not in placed:  # a tied parameter stays one Variable
                    placed[child.key] = child.variable(tensors[child.key])
                _set_child(parent, key, placed[child.key], child.key)
        return model

    def __call__(self, *args, **kwargs) -> Any:
        """The wrapped model's `__call__` on the materialized weights."""
        return self.dense_model()(*args, **kwargs)

    def apply(self, method: str | Callable[..., Any], *args, **kwargs) -> Any:
        """Another method of the wrapped model on the materialized weights.

        `method` is its name (`compressed.apply('encode', x)`) or a function taking the
        model first (`compressed.apply(Net.encode, x)`, `lambda model, x: ...`).
        """
        model = self.dense_model()
        if isinstance(method, str):
            return getattr(model, method)(*args, **kwargs)
        return method(model, *args, **kwargs)

    def materialize(self) -> dict[str, Any]:
        """The dense parameter tree in creation order (jitted), as the linen wrapper's."""
        return _jit_materialize(self.smh_params())

    def accounting(self) -> dict[str, Any]:
        """Counts: hashed_weights (N), n, M, trainable, dense_params, fraction, and more."""
        return accounting_lib.accounting(self.smh_params())

    def summary(self) -> str:
        """A printable table of `accounting`."""
        return accounting_lib.format_accounting(self.accounting())


_jit_materialize = jax.jit(materialize_lib.materialize)


def _is_linen(value: Any) -> bool:
    return isinstance(value, nn.Module) or (
        isinstance(value, type) and issubclass(value, nn.Module))


_HOW = ("smh_jax.nnx.compress takes a function that builds the model from rngs, e.g. "
        "compress(lambda rngs: Net(..., rngs=rngs), fraction=0.25, rngs=nnx.Rngs(0))")


def _check_builder(build: Any) -> None:
    if _is_linen(build):
        name = build.__name__ if isinstance(build, type) else type(build).__name__
        raise UserError(f"smh_jax.nnx.compress takes an NNX model; {name} is a flax.linen "
                        "Module: use smh_jax.compress")
    if isinstance(build, nnx.Module):
        raise UserError(f"{_HOW}, not a built {type(build).__name__}: SMH tiles the weights "
                        "in the order the model creates them, which only its construction "
                        "shows")
    if not callable(build):
        raise UserError(f"{_HOW}; got a {type(build).__name__}")


def _check_model(model: Any) -> None:
    if _is_linen(model):
        raise UserError(f"smh_jax.nnx.compress: the builder returned a flax.linen "
                        f"{type(model).__name__}: use smh_jax.compress for linen models")
    if not isinstance(model, nnx.Module):
        raise UserError(f"smh_jax.nnx.compress: the builder returned a "
                        f"{type(model).__name__}, not an nnx.Module; {_HOW}")


def as_rngs(rngs: Any) -> nnx.Rngs:
    """`rngs` as an `nnx.Rngs` (an int seed or a key are accepted too)."""
    if isinstance(rngs, nnx.Rngs):
        return rngs
    try:
        return nnx.Rngs(rngs)
    except (TypeError, ValueError):
        raise UserError(f"smh_jax.nnx.compress: rngs must be an nnx.Rngs, an int seed or a "
                        f"jax key, got a {type(rngs).__name__}") from None


def compress_with_options(build: Callable[..., Any], options: SMHOptions,
                          rngs: nnx.Rngs) -> SMH:
    """`compress` with validated options: builds, records, lays out, replaces."""
    with recording.recording() as construction:
        model = build(rngs=rngs)
    _check_model(model)
    params = recording.parameters(model)
    if not params:
        raise UserError(f"smh_jax.nnx.compress: {type(model).__name__} has no parameters to "
                        "compress (it holds no nnx.Param)")
    variables = {recording.key_of(path): variable for path, variable in params}
    order = recording.creation_order(construction, params)
    ordered = tree_paths.nest([(key, variables[key].get_value()) for key in order])
    normalization = recording.normalization_paths(model)
    hashed = [key for key, _ in select_hashed(ordered, options, normalization)]
    paths = {recording.key_of(path): path for path, _ in params}
    known = recording.initializer_records(construction, model, [paths[k] for k in hashed])
    stats = init_sampling.statistics(known, hashed, lambda: recording.eager_values(build))
    layout = build_layout(ordered, options, normalization, stats=stats)
    smh = init_params(rngs.params(), layout, ordered)
    slots = {}
    for tensor in layout.hashed:
        variable = variables[tensor.key]
        slots[id(variable)] = HashedSlot(
            key=tensor.key, shape=tensor.shape, dtype=tensor.dtype,
            variable_type=type(variable),
            metadata=_frozen(variable.get_metadata()))
    for parent, key, child in list(_children(model)):
        if isinstance(child, nnx.Variable) and id(child) in slots:
            _set_child(parent, key, slots[id(child)], slots[id(child)].key)
    return SMH(model, layout, smh.pool, smh.modifiers)


def compress(build: Callable[..., Any], fraction: float | None = None, *, rngs: Any,
             **options: Any) -> SMH:
    """Builds `build(rngs=rngs)` with its hashed weights in `fraction` x N variables.

    `build` makes the NNX model from an `nnx.Rngs` (module doc); the factors are drawn
    from `rngs.params()` after it. Options are the fields of `SMHOptions` (pool, include,
    exclude, modifiers, learn_scale, scale_parameterization, target_params, dtype, ...);
    invalid values raise `UserError`, as in `smh_jax.compress`.
    """
    _check_builder(build)
    options = SMHOptions.from_kwargs(fraction=fraction, **options)
    return compress_with_options(build, options, as_rngs(rngs))
