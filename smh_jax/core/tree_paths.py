"""Ordered traversal of parameter trees.

SMH tiles the hashed tensors in the order the model *creates* them. Flax's `init` returns
plain dicts whose insertion order is that creation order, but every `jax.tree` utility
rebuilds dicts with sorted keys, which silently reorders layers (`Dense_10` before
`Dense_2`). These helpers walk mappings in insertion order instead.

Paths are tuples of keys; a key may itself contain '/' (Flax allows any parameter name).
The '/'-joined string form is for display and for include/exclude regular expressions.
Boxed parameters (`nn.with_partitioning`, `nn.with_logical_partitioning`: Flax's
`AxisMetadata`) are leaves here, so their path is the parameter's, not '.../value'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
from flax.core import meta

Path = tuple[str, ...]


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def ordered_items(tree: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Yields (path, leaf) in creation order: mappings in insertion order, others by jax."""
    if isinstance(tree, meta.AxisMetadata):
        yield prefix, tree
        return
    if isinstance(tree, Mapping):
        for key in tree:
            yield from ordered_items(tree[key], prefix + (str(key),))
        return
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if len(leaves) == 1 and not leaves[0][0]:
        yield prefix, leaves[0][1]
        return
    for key_path, leaf in leaves:
        yield prefix + tuple(_key_name(k) for k in key_path), leaf


def path_str(path: Path) -> str:
    """'Conv_0/kernel': the form include/exclude regular expressions are matched against."""
    return "/".join(path)


def jax_path_str(key_path: tuple[Any, ...]) -> str:
    """Same '/'-joined form for a `jax.tree_util` key path (dict keys, attributes, indices)."""
    return "/".join(_key_name(k) for k in key_path)


def get(tree: Mapping[str, Any], path: Path) -> Any:
    """The leaf of a nested mapping at `path`."""
    for key in path:
        tree = tree[key]
    return tree


def nest(items: list[tuple[Path, Any]]) -> dict[str, Any]:
    """Builds a nested dict from (path, value) pairs, keeping their order."""
    root: dict[str, Any] = {}
    for path, value in items:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return root
