"""What an NNX model's construction says about its parameters: creation order, initializers.

SMH tiles the hashed tensors in the order the model *creates* them and starts each one
with its own initializer's mean and std, exactly as the linen wrapper does
(`smh_jax.linen.init_sampling`). An NNX model's state does not keep either: `nnx.state`
flattens in sorted key order (`bias` before `kernel`, `fc10` before `fc2`), and a layer
keeps its parameters, not the initializers that drew them. So `compress` builds the model
itself while recording, on this thread only:

- every `nnx.Variable` constructed (`nnx.Param(...)`, `nnx.BatchStat(...)`), in order:
  a parameter's place in the tiling is its creation;
- every NNX Module constructed, with its constructor's arguments: parameter `name` of a
  module whose constructor takes an initializer `name_init` (`kernel_init`, `bias_init`,
  `scale_init`, `embedding_init`: every flax.nnx layer) was drawn by that initializer,
  called as `init(key, shape, dtype)`; it is used when it gives that shape and dtype.

Statistics then follow the linen rules (`init_sampling.statistics`): analytic for jax's
and flax's initializers and for those declaring `init_stats`, sampled with fixed keys for
other initializers; a parameter with no such initializer is measured on one eager
construction of the whole model with fixed keys (`eager_values`), whether `compress` runs
eagerly or under `nnx.eval_shape` / `jax.jit`, so the layout is the same either way.

The recording patches two class-level hooks of flax.nnx (Variable creation, Module
construction) while any recording is open, and records only the calls made on the
recording thread (`smh_jax.class_hooks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx
from flax.nnx import pytreelib, variablelib

from smh_jax.class_hooks import ThreadHooks
from smh_jax.core import tree_paths
from smh_jax.linen import init_sampling
from smh_jax.linen.init_sampling import Record

# The NNX twins of the linen normalization layers that SMH leaves unhashed by default.
NORMALIZATION_TYPES = tuple(
    getattr(nnx, name) for name in ("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
                                    "InstanceNorm") if hasattr(nnx, name))

NNXPath = tuple[Any, ...]  # nnx paths: attribute names, dict keys, list indices
Key = tuple[str, ...]  # the layout's form of a path: every part a string


@dataclasses.dataclass
class Construction:
    """What one model construction revealed: Variables in creation order, constructors."""

    variables: list[Any] = dataclasses.field(default_factory=list)
    # id(node) -> (node, constructor arguments); the node is kept so its id stays unique.
    constructors: dict[int, tuple[Any, tuple, dict]] = dataclasses.field(default_factory=dict)


def _recording_variable_call(cls, *args, **kwargs):
    variable = _HOOKS.original(variablelib.VariableMeta, "_variable_meta_call")(
        cls, *args, **kwargs)
    construction = _HOOKS.current()
    if construction is not None:
        construction.variables.append(variable)
    return variable


def _recording_construct(cls, self, *args, **kwargs):
    construction = _HOOKS.current()
    if construction is not None:
        construction.constructors[id(self)] = (self, args, kwargs)
    return _HOOKS.original(pytreelib.PytreeMeta, "_pytree_meta_construct")(
        cls, self, *args, **kwargs)


_HOOKS: ThreadHooks[Construction] = ThreadHooks([
    (variablelib.VariableMeta, "_variable_meta_call", _recording_variable_call),
    (pytreelib.PytreeMeta, "_pytree_meta_construct", _recording_construct),
])


def recording() -> contextlib.AbstractContextManager[Construction]:
    """Records the Variables and Modules constructed inside, on this thread."""
    return _HOOKS.recording(Construction())


def key_of(path: NNXPath) -> Key:
    """The layout's key of an nnx path: ('layers', 0, 'kernel') -> ('layers', '0', 'kernel')."""
    return tuple(str(part) for part in path)


def parameters(model: Any) -> list[tuple[NNXPath, Any]]:
    """(nnx path, Variable) of every `nnx.Param` of `model`, in nnx's (sorted) order."""
    return [(tuple(path), variable) for path, variable in nnx.graph.iter_graph(model)
            if isinstance(variable, nnx.Param)]


def creation_order(construction: Construction, params: Sequence[tuple[NNXPath, Any]]
                   ) -> list[Key]:
    """The keys of `params` in the order the model created them (the linen rule).

    A parameter created outside the recorded construction (passed in from outside) keeps
    its place in nnx's order right after the recorded parameter before it.
    """
    rank = {id(variable): i for i, variable in enumerate(construction.variables)}
    created = sorted((rank[id(v)], key_of(path)) for path, v in params if id(v) in rank)
    order_only = init_sampling.Recording(
        records=[Record(key, None, (), {}, "param") for _, key in created])
    nested = tree_paths.nest([(key_of(path), 0) for path, _ in params])
    return init_sampling.creation_order(order_only, nested)


def normalization_paths(model: Any) -> frozenset[str]:
    """'/'-joined paths of the normalization layers in `model` (by type, not by name)."""
    return frozenset("/".join(key_of(path)) for path, module in nnx.iter_modules(model)
                     if isinstance(module, NORMALIZATION_TYPES))


def _constructor_arguments(node: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments `node`'s constructor was called with, defaults included."""
    try:
        bound = inspect.signature(type(node).__init__).bind(node, *args, **kwargs)
    except (TypeError, ValueError):
        return {}
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    for name, parameter in inspect.signature(type(node).__init__).parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(name, {}))
    return arguments


def _draws(init_fn: Callable, shape: tuple[int, ...], dtype: Any) -> bool:
    """Whether `init_fn(key, shape, dtype)` gives an array of that shape and dtype."""
    try:
        out = jax.eval_shape(lambda key: init_fn(key, shape, dtype), jax.random.key(0))
    except Exception:  # noqa: BLE001 - not an initializer of this signature
        return False
    return getattr(out, "shape", None) == shape and getattr(out, "dtype", None) == dtype


def initializer_records(construction: Construction, model: Any,
                        paths: Sequence[NNXPath]) -> init_sampling.Recording:
    """A linen-style recording of the parameters at `paths` whose initializer is known.

    Known: the owning module's constructor took an initializer `<name>_init` (module
    doc). The others have no record, so `init_sampling.statistics` measures them.
    """
    nodes = {tuple(path): node for path, node in nnx.graph.iter_graph(model)}
    records = []
    for path in paths:
        owner, name = nodes.get(path[:-1]), path[-1]
        entry = construction.constructors.get(id(owner))
        if entry is None or entry[0] is not owner or not isinstance(name, str):
            continue
        init_fn = _constructor_arguments(*entry).get(f"{name}_init")
        value = nodes[path].get_value()
        shape, dtype = tuple(value.shape), value.dtype
        if callable(init_fn) and _draws(init_fn, shape, dtype):
            records.append(Record(key_of(path), init_fn, (shape, dtype), {}, "param"))
    return init_sampling.Recording(records=records)


def eager_values(build: Callable[..., Any]) -> dict[str, Any]:
    """Every parameter of one eager construction with fixed keys, nested by key."""
    with jax.ensure_compile_time_eval():
        model = build(rngs=nnx.Rngs(jax.random.key(0, impl="threefry2x32")))
        return tree_paths.nest([(key_of(path), variable.get_value())
                                for path, variable in parameters(model)])
