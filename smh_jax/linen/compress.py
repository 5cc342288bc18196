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
from flax.core.scope import DenyList, union_filters

from smh_jax.core import accounting as accounting_lib
from smh_jax.core import tree_paths
from smh_jax.core.layout import Layout, build_layout, select_hashed
from smh_jax.core.materialize import materialize as materialize_params
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams, init_params
from smh_jax.errors import UserError
from smh_jax.linen import init_sampling
from smh_jax.linen import per_layer as per_layer_lib

PARAM_NAME = "smh"
_INIT_MUTABLE = DenyList("intermediates")  # Flax's default for init


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


def _is_own_call(method: Any) -> bool:
    """Whether `method` (of `apply`/`init`) means the wrapper's own __call__."""
    return (method is None or method == "__call__" or method is SMH.__call__
            or getattr(method, "__func__", None) is SMH.__call__)


class SMH(nn.Module):
    """`model` whose hashed weights are slices of one virtual matrix A @ B (see module doc)."""

    model: nn.Module
    options: SMHOptions
    # Inference memory: materialize each layer's weights right before it runs, from only
    # the rows of A it needs, instead of the whole dense tree at once (linen/per_layer.py).
    per_layer: bool = False
    # Set by `init`/`apply` for one call: the wrapped model's method to run (None: its
    # __call__) and the capture_intermediates filter to hand to it.
    inner_method: Any = None
    capture: Any = False

    @nn.compact
    def __call__(self, *args, **kwargs):
        inner = self.model.clone(parent=None)
        rngs = {name: self.make_rng(name) for name in self.scope.rngs}
        if self.is_initializing() and not self.has_variable("params", PARAM_NAME):
            return self._initialize(inner, rngs, args, kwargs)
        params = self.get_variable("params", PARAM_NAME)
        collections = {c: self.variables[c] for c in self.variables if c != "params"}
        mutable = _inner_mutable(self.scope.mutable)
        if self.per_layer:
            result = per_layer_lib.apply_per_layer(
                inner, params, collections, args, kwargs, rngs, mutable,
                method=self.inner_method, capture_intermediates=self.capture)
        else:
            result = inner.apply({**collections, "params": materialize_params(params)},
                                 *args, rngs=rngs, mutable=mutable, method=self.inner_method,
                                 capture_intermediates=self.capture, **kwargs)
        if mutable is False:
            return result
        output, updates = result
        self._put_collections(updates)
        return output

    def _initialize(self, inner: nn.Module, rngs: dict[str, Any], args: tuple,
                    kwargs: dict[str, Any]) -> Any:
        with init_sampling.recording() as recording:
            dense_variables = inner.init(rngs, *args, method=self.inner_method, **kwargs)
        dense_params = dense_variables.get("params")
        if not dense_params or not jax.tree.leaves(dense_params):
            raise UserError(f"smh: {type(self.model).__name__} has no parameters to compress "
                            "(its init creates no 'params' collection)")
        order = init_sampling.creation_order(recording, dense_params)
        flat = dict(tree_paths.ordered_items(dense_params))
        ordered = tree_paths.nest([(key, flat[key]) for key in order])
        normalization = frozenset(recording.normalization)
        hashed = [key for key, _ in select_hashed(ordered, self.options, normalization)]
        stats = init_sampling.statistics(
            recording, hashed, lambda: init_sampling.eager_sample(
                inner, rngs.keys(), args, kwargs, dense_params, method=self.inner_method))
        layout = build_layout(ordered, self.options, normalization, stats=stats)
        params = self.param(PARAM_NAME, lambda rng: init_params(rng, layout, ordered))
        self._put_collections({c: tree for c, tree in dense_variables.items() if c != "params"})
        # The init forward pass runs on the materialized weights, exactly what `apply`
        # computes; like the original's init, it leaves running statistics as they were.
        variables = {**dense_variables, "params": materialize_params(params)}
        output, updates = inner.apply(variables, *args, rngs=rngs, mutable=True,
                                      method=self.inner_method,
                                      capture_intermediates=self.capture, **kwargs)
        if self.capture and "intermediates" in updates:
            self._put_collections({"intermediates": updates["intermediates"]})
        return output

    def _put_collections(self, updates: Mapping[str, Any]) -> None:
        for collection, tree in updates.items():
            for name, value in tree.items():
                self.put_variable(collection, name, value)

    # Forward `method=` and `capture_intermediates=` to the wrapped model: the wrapper is
    # transparent, so `compressed.apply(v, x, method='encode')` runs the model's encode
    # and captured intermediates are laid out exactly as the model's own.
    @nn.nowrap
    def _forwarding(self, method: Any, capture: Any, mutable: Any) -> tuple["SMH", Any]:
        module = self
        if not _is_own_call(method):
            module = module.clone(inner_method=method)
        if capture:
            module = module.clone(capture=capture)
            mutable = union_filters(mutable, "intermediates")
        return module, mutable

    @nn.nowrap
    def apply(self, variables, *args, rngs=None, method=None, mutable=False,
              capture_intermediates=False, **kwargs):
        """Same arguments as the wrapped model's `apply` (method and capture forwarded)."""
        module, mutable = self._forwarding(method, capture_intermediates, mutable)
        return nn.Module.apply(module, variables, *args, rngs=rngs, mutable=mutable, **kwargs)

    @nn.nowrap
    def init_with_output(self, rngs, *args, method=None, mutable=_INIT_MUTABLE,
                         capture_intermediates=False, **kwargs):
        """Same arguments as the wrapped model's `init_with_output`."""
        module, mutable = self._forwarding(method, capture_intermediates, mutable)
        return nn.Module.init_with_output(module, rngs, *args, mutable=mutable, **kwargs)

    @nn.nowrap
    def init(self, rngs, *args, method=None, mutable=_INIT_MUTABLE,
             capture_intermediates=False, **kwargs):
        """Same arguments as the wrapped model's `init`."""
        module, mutable = self._forwarding(method, capture_intermediates, mutable)
        return nn.Module.init(module, rngs, *args, mutable=mutable, **kwargs)

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


def _check_module(model: Any) -> None:
    if isinstance(model, nn.Module):
        return
    if type(model).__module__.startswith("flax.nnx") or any(
            c.__module__.startswith("flax.nnx") for c in type(model).__mro__):
        raise UserError(f"smh_jax.compress takes a flax.linen Module; {type(model).__name__} "
                        "is an NNX module: use smh_jax.nnx.compress, which takes the function "
                        "that builds it from rngs")
    raise UserError(f"smh_jax.compress takes a flax.linen Module, got a "
                    f"{type(model).__name__}")


def compress(model: nn.Module, fraction: float | None = None, *, per_layer: bool = False,
             **options: Any) -> SMH:
    """Wraps `model` so its weights are hashed into `fraction` x N variables (paper Sec. 3).

    Options are the fields of `SMHOptions` (pool, include, exclude, modifiers, learn_scale,
    scale_parameterization, target_params, dtype, ...); invalid values raise `UserError`.
    `per_layer=True` materializes one layer at a time in the forward pass (lean inference).
    """
    _check_module(model)
    return SMH(model=model, options=SMHOptions.from_kwargs(fraction=fraction, **options),
               per_layer=per_layer)
