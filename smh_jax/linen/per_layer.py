"""Memory-lean inference: materialize each layer's weights right before the layer runs.

`compress(model, ..., per_layer=True)` (or `SMH(..., per_layer=True)`, or
`artifact.load(DIR, per_layer=True)`) applies the wrapped model with its hashed
parameters absent; a Flax method interceptor puts each module's hashed tensors into its
scope just before the module's first method call, computed from only the rows of A they
need (`smh_jax.core.rows`). So the full dense tree never exists at once:

- Each tensor's rows of A are read at an offset computed from the module's input that is
  always 0 but that XLA cannot fold (`core.rows.zero_depending_on`): a data dependency,
  so XLA cannot hoist all layers' weights to the start of the program (where they would
  all be live together); a layer's weights are computed when its input is ready and die
  after the layer. (`jax.lax.optimization_barrier`, the obvious tool, does not do this
  on XLA:CPU: the barrier is removed before scheduling, and the compiled program's temp
  memory was the same with and without it.)
- No placeholders: the hashed entries are simply missing from the params handed to the
  wrapped model (the 'params' collection is mutable so they can be put), and the
  materialized weights that `apply` returns are dropped (dead code under jit).

Modules whose parameters are created in `setup` get them at setup time (no input to tie
to yet). A hashed module that no method call reaches is an error: it would otherwise be
silently missing.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax

from smh_jax.core import materialize, modifiers, rows
from smh_jax.core.params import SMHParams


def _input_dependency(tree: Any) -> Optional[jax.Array]:
    """An always-zero row offset computed from the first array in a method's arguments."""
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and leaf.size:
            return rows.zero_depending_on(leaf)
    return None


def apply_per_layer(model: nn.Module, params: SMHParams, collections: dict[str, Any],
                    args: tuple, kwargs: dict[str, Any], rngs: dict[str, Any],
                    mutable: Any, method: Any = None, capture_intermediates: Any = False
                    ) -> Any:
    """`model.apply` with hashed weights materialized layer by layer (module doc).

    `mutable` is the caller's filter for the other collections (False, or a list); the
    result has the same form as `model.apply(..., mutable=mutable)`. `method` and
    `capture_intermediates` are passed to the wrapped model's `apply`.
    """
    layout = params.layout
    rows.check_supported(layout)
    groups = rows.module_groups(layout)
    learned = modifiers.multipliers(layout, params.modifiers)
    done: set[str] = set()

    def interceptor(next_fun, fargs, fkwargs, context):
        path = tuple(context.module.path)
        entries = groups.get(path)
        if entries is None or path in done:
            return next_fun(*fargs, **fkwargs)
        done.add(path)
        shift = None if context.method_name == "setup" else _input_dependency((fargs, fkwargs))
        for name, index in entries:
            context.module.put_variable("params", name, materialize.boxed(
                layout.hashed[index],
                rows.hashed_tensor(params, index, learned=learned, row_shift=shift)))
        return next_fun(*fargs, **fkwargs)

    if mutable is False:
        inner_mutable: Any = ["params"]
    elif isinstance(mutable, (list, tuple)):
        inner_mutable = ["params", *mutable]
    else:  # a DenyList or True: everything but params was allowed; params too now
        inner_mutable = True
    with nn.intercept_methods(interceptor):
        output, updates = model.apply({"params": params.unhashed, **collections}, *args,
                                      rngs=rngs, mutable=inner_mutable, method=method,
                                      capture_intermediates=capture_intermediates, **kwargs)
    missing = sorted(set(groups) - done)
    if missing:
        raise ValueError(f"per-layer materialization: no method of module "
                         f"{'/'.join(missing[0])!r} "
                         f"was called, so its hashed parameters were never put "
                         f"({len(missing)} such modules)")
    updates = {k: v for k, v in updates.items() if k != "params"}
    if mutable is False:
        return output
    return output, updates
