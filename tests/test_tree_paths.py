"""Ordered traversal: creation (insertion) order, not sorted order."""

import jax.numpy as jnp
from hypothesis import given
from hypothesis import strategies as st

from smh_jax.core import tree_paths


def test_ordered_items_keeps_insertion_order_where_jax_tree_sorts():
    tree = {"z": {"kernel": jnp.ones(2), "bias": jnp.zeros(1)}, "Dense_10": jnp.ones(3),
            "Dense_2": jnp.ones(4)}
    paths = [tree_paths.path_str(p) for p, _ in tree_paths.ordered_items(tree)]
    assert paths == ["z/kernel", "z/bias", "Dense_10", "Dense_2"]


keys = st.text(alphabet="abcXYZ_019", min_size=1, max_size=6)
trees = st.recursive(st.integers(0, 9), lambda children: st.dictionaries(keys, children,
                                                                          min_size=1, max_size=4),
                     max_leaves=20)


@given(st.dictionaries(keys, trees, min_size=1, max_size=4))
def test_nest_inverts_ordered_items(tree):
    items = list(tree_paths.ordered_items(tree))
    rebuilt = tree_paths.nest(items)
    assert list(tree_paths.ordered_items(rebuilt)) == items
    for path, leaf in items:
        assert tree_paths.get(rebuilt, path) == leaf


def test_non_dict_containers_use_jax_key_paths():
    items = list(tree_paths.ordered_items({"a": [jnp.ones(1), (jnp.ones(2),)]}))
    assert [tree_paths.path_str(p) for p, _ in items] == ["a/0", "a/1/0"]
