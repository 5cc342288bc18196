"""Concrete draws of a Flax model's own initializers, taken at trace time.

SMH scales each hashed slice to the std the layer's own initializer gives and matches its
range (normal vs bounded), so it needs concrete initial values even when `init` runs
under `jax.jit` or `jax.eval_shape`. Those statistics must be static numbers (they live
in the layout, which is pytree metadata), and identical however `init` is called.

The cheap way: while the wrapped model initializes, record every `self.param(name,
init_fn, *args)` call, then replay those initializers with fixed keys, concretely
(compile-time eval), in one small jitted function that holds only the random-number
generation, no forward pass. Models whose initializers close over traced values (a
data-dependent init) cannot be replayed; for them `eager_sample` runs the model's whole
`init` eagerly on zero inputs instead (slower: op-by-op, forward pass included).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from smh_jax.core import tree_paths

NORMALIZATION_TYPES = tuple(
    getattr(nn, name) for name in ("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
                                   "InstanceNorm") if hasattr(nn, name))

_PATCH_LOCK = threading.RLock()

Record = tuple[tuple[str, ...], Any, tuple, dict]


@contextlib.contextmanager
def recording(records: list[Record], normalization: set[str]) -> Iterator[None]:
    """Records param initializers and normalization-layer paths of inits run inside.

    Patches `nn.Module.param` for the duration (under a lock: one recording at a time)
    and intercepts module calls to find normalization layers by type, not by name.
    """
    original = nn.Module.param

    def param(module, name, init_fn, *init_args, unbox=True, **init_kwargs):
        records.append((tuple(module.path) + (name,), init_fn, init_args, init_kwargs))
        return original(module, name, init_fn, *init_args, unbox=unbox, **init_kwargs)

    def find_normalization(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, NORMALIZATION_TYPES):
            normalization.add("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    with _PATCH_LOCK:
        nn.Module.param = param
        try:
            with nn.intercept_methods(find_normalization):
                yield
        finally:
            nn.Module.param = original


def _is_traced(tree: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def replay(records: list[Record], paths: set[tuple[str, ...]]) -> Optional[dict]:
    """Fresh concrete draws of the recorded initializers for `paths`, nested like params.

    Returns None when an initializer cannot be replayed outside the model (traced
    arguments or closures); the caller then falls back to `eager_sample`.
    """
    wanted = [(i, r) for i, r in enumerate(records) if r[0] in paths]
    if any(_is_traced((args, kwargs)) for _, (_, _, args, kwargs) in wanted):
        return None

    def draw():
        # 'rbg' keys: one RngBitGenerator op per tensor compiles far faster than threefry.
        base = jax.random.key(0, impl="rbg")
        return [nn.meta.unbox(init_fn(jax.random.fold_in(base, i), *args, **kwargs))
                for i, (_, init_fn, args, kwargs) in wanted]

    try:
        with jax.ensure_compile_time_eval():
            values = draw()
        if _is_traced(values):  # an initializer closed over a traced value
            return None
        values = [np.asarray(v) for v in jax.device_get(values)]
    except (TypeError, ValueError):  # jax's tracer errors are TypeErrors
        return None
    return tree_paths.nest([(path, v) for (_, (path, *_)), v in zip(wanted, values, strict=True)])


def _concrete_zeros(tree: Any, batch_one: bool) -> Any:
    def zeros(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)):
            shape = leaf.shape[:1] and (1,) + leaf.shape[1:] if batch_one else leaf.shape
            return jnp.zeros(shape, leaf.dtype)
        return leaf
    return jax.tree.map(zeros, tree)


def _shapes(params: Any) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    return [(path, tuple(leaf.shape)) for path, leaf in tree_paths.ordered_items(params)]


def eager_sample(model: nn.Module, rng_names, args, kwargs, expected_params: Any) -> dict:
    """The whole `model.init`, eagerly with fixed keys and zero inputs: the fallback.

    Eager, not jitted: jit would return dicts with sorted keys. The inputs are cut to a
    batch of one to keep the forward pass cheap, unless that changes parameter shapes.
    """
    with jax.ensure_compile_time_eval():
        rngs = {name: jax.random.key(i) for i, name in enumerate(sorted(rng_names))}
        rngs.setdefault("params", jax.random.key(0))
        for batch_one in (True, False):
            try:
                variables = model.init(rngs, *_concrete_zeros(args, batch_one),
                                       **_concrete_zeros(kwargs, batch_one))
            except Exception:  # noqa: BLE001 - a batch of one may not suit every model
                if not batch_one:
                    raise
                continue
            if _shapes(variables["params"]) == _shapes(expected_params):
                break
    return variables["params"]
