"""The thin Flax wrapper: compress any `flax.linen` Module without touching its code.

    compressed = smh_jax.compress(model, fraction=0.25)
    variables = compressed.init(rng, x)          # same arguments as model.init
    y = compressed.apply(variables, x)           # same arguments as model.apply
    dense = compressed.materialize(variables["params"])

The wrapper stores SMH parameters under params['smh'] (an `SMHParams` pytree) and keeps
every other collection (batch_stats, ...) exactly as the wrapped model lays it out. On each
call it materializes the dense parameters (one matrix product) and applies the wrapped
model functionally, passing through rngs and mutable collections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core.scope import DenyList

from smh_jax.core import accounting as accounting_lib
from smh_jax.core import tree_paths
from smh_jax.core.layout import Layout, build_layout
from smh_jax.core.materialize import materialize as materialize_params
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams, init_params

PARAM_NAME = "smh"

_NORMALIZATION_TYPES = tuple(
    getattr(nn, name) for name in ("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
                                   "InstanceNorm") if hasattr(nn, name))


def smh_params_of(params: Union[Mapping[str, Any], SMHParams]) -> SMHParams:
    """Accepts variables['params'] of a compressed model, or the SMHParams itself."""
    if isinstance(params, SMHParams):
        return params
    if isinstance(params, Mapping) and isinstance(params.get(PARAM_NAME), SMHParams):
        return params[PARAM_NAME]
    keys = list(params)[:5] if isinstance(params, Mapping) else "-"
    raise TypeError("expected the params of a compressed model ({'smh': SMHParams(...)}), got "
                    f"a {type(params).__name__} with keys {keys}")


def _concrete_zeros(tree: Any, batch_one: bool) -> Any:
    def zeros(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)):
            shape = leaf.shape[:1] and (1,) + leaf.shape[1:] if batch_one else leaf.shape
            return jnp.zeros(shape, leaf.dtype)
        return leaf
    return jax.tree.map(zeros, tree)


def _shapes(params: Any) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    return [(path, tuple(leaf.shape)) for path, leaf in tree_paths.ordered_items(params)]


def sample_init(model: nn.Module, rng_names, args, kwargs,
                expected_params: Any = None) -> tuple[dict, frozenset[str]]:
    """A concrete draw of `model`'s own init, and the paths of its normalization layers.

    Runs eagerly at trace time (compile-time eval) with fixed keys and zero inputs, so each
    layer's init statistics are static numbers, identical whether the wrapper is
    initialized eagerly, under jit, or only shape-evaluated. Eager, not jitted: jit would
    return dicts with sorted keys and lose the creation order. The inputs are cut to a
    batch of one to keep the forward pass cheap, unless that changes the parameter shapes
    (then the full inputs are used).
    """
    normalization = set()

    def record(next_fun, fargs, fkwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, _NORMALIZATION_TYPES):
            normalization.add("/".join(context.module.path))
        return next_fun(*fargs, **fkwargs)

    with jax.ensure_compile_time_eval():
        rngs = {name: jax.random.key(i) for i, name in enumerate(sorted(rng_names))}
        rngs.setdefault("params", jax.random.key(0))
        for batch_one in (True, False):
            normalization.clear()
            try:
                with nn.intercept_methods(record):
                    variables = model.init(rngs, *_concrete_zeros(args, batch_one),
                                           **_concrete_zeros(kwargs, batch_one))
            except Exception:  # noqa: BLE001 - a batch of one may not suit every model
                if not batch_one:
                    raise
                continue
            if expected_params is None or _shapes(variables["params"]) == _shapes(expected_params):
                break
    return variables, frozenset(normalization)


def build_model_layout(model: nn.Module, options: SMHOptions, *args, rng_names=("params",),
                       **kwargs) -> Layout:
    """The layout `compress(model, ...)` would use for these example inputs."""
    sample, normalization = sample_init(model, rng_names, args, kwargs)
    return build_layout(sample["params"], options, normalization, sample=sample["params"])


def _inner_mutable(mutable: Any) -> Any:
    """The caller's mutable filter, minus 'params' (the wrapped model never owns params)."""
    if mutable is True:
        return DenyList("params")
    if mutable is False:
        return False
    if isinstance(mutable, str):
        return False if mutable == "params" else [mutable]
    if isinstance(mutable, DenyList):
        if mutable.deny is True:
            return False
        deny = (mutable.deny,) if isinstance(mutable.deny, str) else tuple(mutable.deny)
        return DenyList(deny + ("params",))
    return [c for c in mutable if c != "params"]


class SMH(nn.Module):
    """`model` whose hashed weights are slices of one virtual matrix A @ B (see module doc)."""

    model: nn.Module
    options: SMHOptions

    @nn.compact
    def __call__(self, *args, **kwargs):
        inner = self.model.clone(parent=None)
        rngs = {name: self.make_rng(name) for name in self.scope.rngs}
        if self.is_initializing() and not self.has_variable("params", PARAM_NAME):
            dense_variables = inner.init(rngs, *args, **kwargs)
            sample, normalization = sample_init(inner, rngs.keys(), args, kwargs,
                                                expected_params=dense_variables["params"])
            layout = build_layout(dense_variables["params"], self.options, normalization,
                                  sample=sample["params"])
            self.param(PARAM_NAME, lambda rng: init_params(rng, layout, dense_variables["params"]))
            for collection, tree in dense_variables.items():
                if collection != "params":
                    for name, value in tree.items():
                        self.put_variable(collection, name, value)
            params = self.get_variable("params", PARAM_NAME)
            # The original's init does not update running statistics: discard updates.
            output, _ = inner.apply({"params": materialize_params(params), **dense_variables},
                                    *args, rngs=rngs, mutable=True, **kwargs)
            return output
        params = self.get_variable("params", PARAM_NAME)
        collections = {c: self.variables[c] for c in self.variables if c != "params"}
        mutable = _inner_mutable(self.scope.mutable)
        result = inner.apply({"params": materialize_params(params), **collections}, *args,
                             rngs=rngs, mutable=mutable, **kwargs)
        if mutable is False:
            return result
        output, updates = result
        for collection, tree in updates.items():
            for name, value in tree.items():
                self.put_variable(collection, name, value)
        return output

    @nn.nowrap
    def materialize(self, params: Union[Mapping[str, Any], SMHParams]) -> dict[str, Any]:
        """Dense params tree that `model.apply` accepts (jitted; one A @ B)."""
        return _jit_materialize(smh_params_of(params))

    @nn.nowrap
    def accounting(self, params: Union[Mapping[str, Any], SMHParams]) -> dict[str, Any]:
        """Counts: hashed_weights (N), n, M, trainable, dense_params, fraction, and more."""
        return accounting_lib.accounting(smh_params_of(params))

    @nn.nowrap
    def summary(self, params: Union[Mapping[str, Any], SMHParams]) -> str:
        """A printable table of `accounting`."""
        return accounting_lib.format_accounting(self.accounting(params))


_jit_materialize = jax.jit(materialize_params)


def compress(model: nn.Module, fraction: float | None = None, **options: Any) -> SMH:
    """Wraps `model` so its weights are hashed into `fraction` x N variables (paper Sec. 3).

    Options are the fields of `SMHOptions` (pool, include, exclude, modifiers, learn_scale,
    scale_parameterization, target_params, dtype, ...); invalid values raise `UserError`.
    """
    return SMH(model=model, options=SMHOptions(fraction=fraction, **options))
