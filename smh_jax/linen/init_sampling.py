"""What a linen model's own `init` says about its parameters: creation order and init stats.

SMH tiles the hashed tensors in the order the model *creates* them and starts each one
with its own initializer's mean and std (`smh_jax.core.init_stats`). Both must be known
at trace time (the layout is static) and be the same however `init` is called: eagerly,
under `jax.jit`, or under `jax.eval_shape`. So while the wrapped model initializes, every
parameter creation is recorded: `self.param(name, init_fn, *args)` and
`self.variable('params', name, init_fn, *args)`, in call order.

- Order: the recorded order. Flax's own dicts are in creation order too, except under
  lifted transforms (`nn.scan`, `nn.remat`, `nn.jit`, `nn.vmap`), which return sub-trees
  with sorted keys (bias before kernel, `Dense_10` before `Dense_2`).
- Statistics, per hashed tensor, from its recorded initializer: analytic for the known
  ones, sampled (fixed keys) for others. Two cases cannot be replayed on their own:
  * an initializer that closes over a traced value (a data-dependent init under jit):
    its statistics cannot be static, so this is a `UserError` naming the tensor (eager
    `init` computes them from the concrete values);
  * a parameter made by `self.variable('params', ...)`, whose init function draws from
    the module's own rng: measured on one eager `init` of the whole model with fixed
    keys and zero inputs (`eager_sample`), eagerly and under jit alike.

The recording patches `nn.Module.param` and `nn.Module.variable` while any recording is
active, and records only the calls made on the recording thread (other threads'
models initialize untouched; `smh_jax.class_hooks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from smh_jax.class_hooks import ThreadHooks
from smh_jax.core import init_stats, tree_paths
from smh_jax.core.init_stats import InitStats
from smh_jax.errors import UserError

NORMALIZATION_TYPES = tuple(
    getattr(nn, name) for name in ("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
                                   "InstanceNorm") if hasattr(nn, name))

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Record:
    """One parameter creation: where, with which initializer and arguments."""

    path: Path
    init_fn: Callable
    args: tuple
    kwargs: dict
    kind: str  # 'param' (init_fn(rng, *args)) or 'variable' (init_fn(*args))


@dataclasses.dataclass
class Recording:
    """What one wrapped `init` revealed: creations in order, normalization module paths."""

    records: list[Record] = dataclasses.field(default_factory=list)
    normalization: set[str] = dataclasses.field(default_factory=set)

    def first(self) -> dict[Path, Record]:
        """The first creation of each path (lifted transforms may trace a body twice)."""
        out: dict[Path, Record] = {}
        for record in self.records:
            out.setdefault(record.path, record)
        return out


def _recording_param(module, name, init_fn, *init_args, unbox=True, **init_kwargs):
    recording = _HOOKS.current()
    if recording is not None:
        recording.records.append(Record(tuple(module.path) + (name,), init_fn, init_args,
                                        init_kwargs, "param"))
    return _HOOKS.original(nn.Module, "param")(module, name, init_fn, *init_args, unbox=unbox,
                                               **init_kwargs)


def _recording_variable(module, col, name, init_fn=None, *init_args, unbox=True, **init_kwargs):
    recording = _HOOKS.current()
    if recording is not None and col == "params" and init_fn is not None:
        recording.records.append(Record(tuple(module.path) + (name,), init_fn, init_args,
                                        init_kwargs, "variable"))
    return _HOOKS.original(nn.Module, "variable")(module, col, name, init_fn, *init_args,
                                                  unbox=unbox, **init_kwargs)


_HOOKS: ThreadHooks[Recording] = ThreadHooks([
    (nn.Module, "param", _recording_param),
    (nn.Module, "variable", _recording_variable),
])


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Records parameter creations and normalization layers of the inits run inside."""
    result = Recording()

    def find_normalization(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, NORMALIZATION_TYPES):
            result.normalization.add("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    with _HOOKS.recording(result), nn.intercept_methods(find_normalization):
        yield result


def creation_order(recording: Recording, params: Mapping[str, Any]) -> list[Path]:
    """Every parameter path of `params`, in the order the model created them.

    Recorded paths take their recorded position; a path created some other way keeps
    its place in the dict right after the recorded path before it.
    """
    rank = {path: i for i, path in enumerate(recording.first())}
    keyed, previous = [], -1
    for position, (path, _) in enumerate(tree_paths.ordered_items(params)):
        if path in rank:
            previous = rank[path]
            keyed.append(((rank[path], 0, position), path))
        else:
            keyed.append(((previous, 1, position), path))
    return [path for _, path in sorted(keyed)]


def _is_traced(tree: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


_EAGER = "eager"  # _replay's answer for an initializer that only runs inside its model


def _replay(record: Record) -> Any:
    """Analytic or sampled statistics of a `self.param` initializer (module doc).

    None when the initializer depends on traced values; _EAGER when it cannot be called
    outside its model (the whole-model eager sample measures it instead).
    """
    stats = init_stats.analytic(record.init_fn, record.args, record.kwargs)
    if stats is not None:
        return stats
    if _is_traced((record.args, record.kwargs)):
        return None
    try:
        return init_stats.sample(record.init_fn, record.args, record.kwargs,
                                 unbox=nn.meta.unbox)
    except init_stats.TracedInitializer:
        return None
    except Exception:  # noqa: BLE001 - e.g. an initializer that needs its module's scope
        return _EAGER


def statistics(recording: Recording, paths: Sequence[Path],
               eager_params: Callable[[], Mapping[str, Any]]) -> dict[Path, InitStats]:
    """Init statistics of each of `paths` (module doc); `eager_params` is the fallback."""
    first = recording.first()
    out: dict[Path, InitStats] = {}
    eager: list[Path] = []
    for path in paths:
        record = first.get(path)
        stats = _EAGER if record is None or record.kind == "variable" else _replay(record)
        if stats is None:
            name = "/".join(path)
            raise UserError(
                f"smh: the initializer of {name!r} depends on traced values (the model's "
                "inputs or other parameters), so its init statistics cannot be fixed under "
                "jax.jit / jax.eval_shape; call the compressed model's init eagerly, or give "
                f"{name!r} an initializer that depends only on its shape")
        if stats is _EAGER:
            eager.append(path)
        else:
            out[path] = stats
    if eager:
        sample = dict(tree_paths.ordered_items(eager_params()))
        for path in eager:
            out[path] = init_stats.from_samples([sample[path]])
    return {path: init_stats.rounded(out[path]) for path in paths}


def _concrete_zeros(tree: Any, batch_one: bool) -> Any:
    def zeros(leaf):
        if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) or hasattr(leaf, "shape"):
            shape = leaf.shape[:1] and (1,) + tuple(leaf.shape[1:]) if batch_one else leaf.shape
            return jnp.zeros(shape, leaf.dtype)
        return leaf
    return jax.tree.map(zeros, tree)


def _shapes(params: Any) -> list[tuple[Path, tuple[int, ...]]]:
    return [(path, tuple(jnp.shape(leaf))) for path, leaf in
            tree_paths.ordered_items(nn.meta.unbox(params))]


def eager_sample(model: nn.Module, rng_names, args, kwargs, expected_params: Any,
                 method: Any = None) -> dict:
    """The whole `model.init`, eagerly with fixed keys and zero inputs (unboxed params).

    Eager, not jitted: jit would return dicts with sorted keys. The inputs are cut to a
    batch of one to keep the forward pass cheap, unless that changes parameter shapes.
    """
    with jax.ensure_compile_time_eval():
        rngs = {name: jax.random.key(i, impl="threefry2x32")
                for i, name in enumerate(sorted(rng_names))}
        rngs.setdefault("params", jax.random.key(0, impl="threefry2x32"))
        for batch_one in (True, False):
            try:
                variables = model.init(rngs, *_concrete_zeros(args, batch_one),
                                       method=method, **_concrete_zeros(kwargs, batch_one))
            except Exception:  # noqa: BLE001 - a batch of one may not suit every model
                if not batch_one:
                    raise
                continue
            if _shapes(variables["params"]) == _shapes(expected_params):
                break
    return nn.meta.unbox(variables["params"])
