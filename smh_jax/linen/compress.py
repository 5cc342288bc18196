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
from flax.core.scope import DenyList

from smh_jax.linen import per_layer as per_layer_lib
from smh_jax.linen import init_sampling
from smh_jax.core import accounting as accounting_lib
from smh_jax.core import tree_paths
from smh_jax.core.layout import Layout, build_layout
from smh_jax.core.materialize import materialize as materialize_params
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams, init_params

PARAM_NAME = "smh"

def smh_params_of(params: Union[Mapping[str, Any], SMHParams]) -> SMHParams:
    """Accepts variables['params'] of a compressed model, or the SMHParams itself."""
    if isinstance(params, SMHParams):
        return params
    if isinstance(params, Mapping) and isinstance(params.get(PARAM_NAME), SMHParams):
        return params[PARAM_NAME]
    keys = list(params)[:5] if isinstance(params, Mapping) else "-"
    raise TypeError("expected the params of a compressed model ({'smh': SMHParams(...)}), got "
                    f"a {type(params).__name__} with keys {keys}")


def build_model_layout(model: nn.Module, options: SMHOptions, *args, rng_names=("params",),
                       **kwargs) -> Layout:
    """The layout `compress(model, ...)` would use for these example inputs (no compute)."""
    rngs = {name: jax.random.key(i) for i, name in enumerate(rng_names)}
    return jax.eval_shape(
        lambda: SMH(model=model, options=options).init(rngs, *args, **kwargs))[
            "params"][PARAM_NAME].layout


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
    # Inference memory: materialize each layer's weights right before it runs, from only
    # the rows of A it needs, instead of the whole dense tree at once (smh_jax/linen/per_layer.py).
    per_layer: bool = False

    @nn.compact
    def __call__(self, *args, **kwargs):
        inner = self.model.clone(parent=None)
        rngs = {name: self.make_rng(name) for name in self.scope.rngs}
        if self.is_initializing() and not self.has_variable("params", PARAM_NAME):
            records, normalization = [], set()
            with init_sampling.recording(records, normalization):
                dense_variables = inner.init(rngs, *args, **kwargs)
            dense_params = dense_variables["params"]
            paths = {path for path, _ in tree_paths.ordered_items(dense_params)}
            sample = init_sampling.replay(records, paths)
            if sample is None:
                sample = init_sampling.eager_sample(inner, rngs.keys(), args, kwargs,
                                                    dense_params)
            layout = build_layout(dense_params, self.options, frozenset(normalization),
                                  sample=sample)
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
        if self.per_layer:
            result = per_layer_lib.apply_per_layer(inner, params, collections, args, kwargs, rngs,
                                          mutable)
        else:
            result = inner.apply({"params": materialize_params(params), **collections},
                                 *args, rngs=rngs, mutable=mutable, **kwargs)
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


def compress(model: nn.Module, fraction: float | None = None, *, per_layer: bool = False,
             **options: Any) -> SMH:
    """Wraps `model` so its weights are hashed into `fraction` x N variables (paper Sec. 3).

    Options are the fields of `SMHOptions` (pool, include, exclude, modifiers, learn_scale,
    scale_parameterization, target_params, dtype, ...); invalid values raise `UserError`.
    `per_layer=True` materializes one layer at a time in the forward pass (lean inference).
    """
    return SMH(model=model, options=SMHOptions(fraction=fraction, **options),
               per_layer=per_layer)
