"""An NNX model behind linen's `init` / `apply`, with linen's variables.

    module = LinenBridge(build, options)     # options=None: the dense NNX model
    variables = module.init({'params': key, 'dropout': key}, x, train=False)
    logits, updates = module.apply(variables, x, train=True, rngs={'dropout': key},
                                   mutable=['batch_stats'])

The trainer, `eval.py`, checkpoints, sharding rules, EMA and the exports work on a linen
module's `init`/`apply` and its variables. This bridge gives an NNX model (a zoo twin,
dense or compressed by `smh_jax.nnx.compress`) exactly that interface, and lays its
variables out as linen does: `params` (for a compressed model `{'smh': SMHParams}`, the
linen wrapper's form, so accounting, weight decay on the weights, the warm start and
the artifact treat both alike), `batch_stats` and the other Variable types under their
flax collection names, each nested by the Variable's path. A twin that names its layers
as its linen model does therefore has the linen model's variables, and checkpoints of
the two are interchangeable.

RNG state is not a variable here, as in linen: each `apply` draws from the `rngs` it is
given (the trainer's per-step dropout key), and `train` switches the model between
`model.train()` and `model.eval()`. `build(input_shape, rngs=...)` makes the NNX model
for one example's shape; the structure `apply` merges the variables into comes from
`nnx.eval_shape` of it (once per input shape).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import variablelib

from smh_jax.core import tree_paths
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams
from smh_jax.nnx.compress import SMH, compress_with_options
from smh_jax.nnx import recording

PARAM_NAME = "smh"  # as the linen wrapper: params == {'smh': SMHParams}
# The RNG streams a model is built with (a layer stores the stream it draws from, so
# `init` and the structure `apply` merges into must name the same ones).
STREAMS = ("params", "dropout")
_PLACEHOLDER_SEED = 0  # the key of an RNG stream that `apply` was given no key for


def _collection(variable: nnx.Variable) -> str:
    """The flax collection of a Variable type: 'params', 'batch_stats', 'cache', ..."""
    return variablelib.variable_name_from_type(type(variable), allow_register=True)


def _is_rng(variable: Any) -> bool:
    return isinstance(variable, nnx.RngState)


def _model_of(module: Any) -> Any:
    """The NNX model holding the Variables: the wrapped model of a compressed one."""
    return module.model if isinstance(module, SMH) else module


def to_variables(module: Any) -> dict[str, Any]:
    """Linen-style variables of an NNX model (compressed or not), RNG state left out."""
    collections: dict[str, list] = {}
    params = []
    for path, variable in nnx.graph.iter_graph(_model_of(module)):
        if not isinstance(variable, nnx.Variable) or _is_rng(variable):
            continue
        item = (recording.key_of(path), variable.get_value())
        if isinstance(variable, nnx.Param):
            params.append(item)
        else:
            collections.setdefault(_collection(variable), []).append(item)
    if isinstance(module, SMH):
        variables = {"params": {PARAM_NAME: module.smh_params()}}
    else:
        variables = {"params": tree_paths.nest(params)}
    return {**variables, **{c: tree_paths.nest(items) for c, items in collections.items()}}


def _value(path: tuple[Any, ...], variable: nnx.Variable, variables: Mapping[str, Any],
           rngs: Mapping[str, jax.Array], compressed: bool) -> Any:
    """The value `variables` (or `rngs`) give the Variable at `path` of the structure."""
    if isinstance(variable, nnx.RngKey):
        tag = variable.get_metadata("tag")
        return rngs[tag] if tag in rngs else jax.random.key(_PLACEHOLDER_SEED)
    if isinstance(variable, nnx.RngCount):
        return jnp.zeros(variable.shape, variable.dtype)
    key = recording.key_of(path)
    if compressed:
        smh: SMHParams = variables["params"][PARAM_NAME]
        if key[0] in ("pool", "modifiers"):
            return tree_paths.get(getattr(smh, key[0]), key[1:])
        key = key[1:]  # under 'model'
        if isinstance(variable, nnx.Param):
            return tree_paths.get(smh.unhashed, key)
    return tree_paths.get(variables[_collection(variable)], key)


class LinenBridge:
    """An NNX model, dense or compressed, with a linen module's `init`/`apply` (module doc).

    `build(input_shape, rngs=...)` makes the NNX model for one example's (H, W, C) shape;
    `options` (SMHOptions) compresses it with `smh_jax.nnx.compress`, None keeps it dense.
    """

    def __init__(self, build: Callable[..., Any], options: Optional[SMHOptions] = None):
        self.build = build
        self.options = options
        self._structures: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def create(self, input_shape: tuple[int, ...], rngs: nnx.Rngs) -> Any:
        """The NNX model for inputs of `input_shape` (one example), compressed if asked."""
        build = functools.partial(self.build, tuple(input_shape))
        if self.options is None:
            return build(rngs=rngs)
        return compress_with_options(build, self.options, rngs)

    def _structure(self, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
        """(graphdef, abstract state) of the model for `input_shape`, built abstractly once."""
        if input_shape not in self._structures:
            rngs = {name: i for i, name in enumerate(STREAMS)}
            abstract = nnx.eval_shape(lambda: self.create(input_shape, nnx.Rngs(**rngs)))
            self._structures[input_shape] = nnx.split(abstract)
        return self._structures[input_shape]

    def init(self, rngs: Any, x: jax.Array, *, train: bool = False) -> dict[str, Any]:
        """Fresh variables; `rngs` is the 'params' key or a dict of keys of `STREAMS`.

        A stream without a key (e.g. 'dropout', which only `apply` draws from) gets one
        folded from the 'params' key.
        """
        del train  # an NNX model has nothing to run at creation
        given = dict(rngs) if isinstance(rngs, Mapping) else {"params": rngs}
        streams = {name: given[name] if name in given else
                   jax.random.fold_in(given["params"], i) for i, name in enumerate(STREAMS)}
        return to_variables(self.create(tuple(x.shape[1:]), nnx.Rngs(**streams)))

    def merge(self, variables: Mapping[str, Any], input_shape: tuple[int, ...],
              rngs: Optional[Mapping[str, jax.Array]] = None) -> Any:
        """The NNX model holding `variables`, its RNG streams seeded from `rngs`."""
        graphdef, abstract = self._structure(tuple(input_shape))
        compressed = self.options is not None
        flat = [(path, variable.replace(_value(path, variable, variables, rngs or {},
                                                compressed)))
                for path, variable in nnx.to_flat_state(abstract)]
        return nnx.merge(graphdef, nnx.from_flat_state(flat))

    def apply(self, variables: Mapping[str, Any], x: jax.Array, *, train: bool,
              rngs: Optional[Mapping[str, jax.Array]] = None, mutable: Any = False) -> Any:
        """The model's output; with `mutable` (True or collection names) also the updates."""
        model = self.merge(variables, x.shape[1:], rngs)
        if train:
            model.train()
        else:
            model.eval()
        output = model(x)
        if mutable is False:
            return output
        updates = {c: tree for c, tree in to_variables(model).items() if c != "params"}
        if mutable is not True:
            names = [mutable] if isinstance(mutable, str) else list(mutable)
            updates = {c: tree for c, tree in updates.items() if c in names}
        return output, updates
