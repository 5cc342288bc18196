"""Layout: selection by regex and type, creation-order tiling, sizing, init statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smh_jax.core import tree_paths
from smh_jax.core.layout import build_layout, select_hashed
from smh_jax.core.options import SMHOptions
from smh_jax.errors import UserError


def _params():
    # Deliberately not in sorted order: creation order is z, Dense_10, Dense_2, norm.
    rng = np.random.default_rng(0)
    return {
        "z": {"kernel": rng.normal(0, 0.1, (3, 3, 4, 8)).astype(np.float32),
              "bias": np.zeros(8, np.float32)},
        "Dense_10": {"kernel": rng.uniform(-0.5, 0.5, (8, 16)).astype(np.float32)},
        "Dense_2": {"kernel": rng.normal(0, 1.0, (16, 4)).astype(np.float32)},
        "norm": {"scale": np.ones(4, np.float32), "bias": np.zeros(4, np.float32)},
        "count": {"steps": np.zeros((), np.int32)},
    }


def test_tiles_in_creation_order_with_contiguous_offsets():
    layout = build_layout(_params(), SMHOptions(fraction=0.5), frozenset({"norm"}))
    assert [t.path for t in layout.hashed] == ["z/kernel", "z/bias", "Dense_10/kernel",
                                               "Dense_2/kernel"]
    offsets = [t.offset for t in layout.hashed]
    sizes = [t.size for t in layout.hashed]
    assert offsets == list(np.cumsum([0] + sizes[:-1]))
    assert layout.num_hashed == sum(sizes) == 288 + 8 + 128 + 64
    assert [tree_paths.path_str(k) for k, hashed in layout.param_order if not hashed] == [
        "norm/scale", "norm/bias", "count/steps"]


def test_normalization_layers_and_non_float_are_skipped_by_default():
    paths = [tree_paths.path_str(k) for k, _ in select_hashed(
        _params(), SMHOptions(fraction=0.5), frozenset({"norm"}))]
    assert "norm/scale" not in paths and "count/steps" not in paths
    with_norm = [tree_paths.path_str(k) for k, _ in select_hashed(
        _params(), SMHOptions(fraction=0.5, hash_normalization=True), frozenset({"norm"}))]
    assert "norm/scale" in with_norm


def test_include_exclude_patterns():
    options = SMHOptions(fraction=0.5, include=r"kernel$", exclude=(r"^Dense_2",))
    paths = [tree_paths.path_str(k) for k, _ in select_hashed(_params(), options,
                                                               frozenset({"norm"}))]
    assert paths == ["z/kernel", "Dense_10/kernel"]


def test_selection_errors():
    with pytest.raises(UserError, match="select no parameter.*z/kernel"):
        select_hashed(_params(), SMHOptions(fraction=0.5, include="nothing_matches"))
    with pytest.raises(UserError, match="'count/steps' of dtype int32"):
        select_hashed(_params(), SMHOptions(fraction=0.5, include="steps"))
    with pytest.raises(UserError, match="not a valid regular expression"):
        SMHOptions(fraction=0.5, include="(")


def test_init_statistics_and_range_vote():
    layout = build_layout(_params(), SMHOptions(fraction=0.5), frozenset({"norm"}))
    stats = {t.path: t for t in layout.hashed}
    assert abs(stats["z/kernel"].init_std - 0.1) < 0.01
    assert stats["z/bias"].init_std == 0.0
    assert stats["Dense_10/kernel"].init_kurtosis < -1.0  # uniform
    assert abs(stats["Dense_2/kernel"].init_kurtosis) < 0.8  # normal
    assert layout.bounded_init is False  # normal kernels hold most of the weights
    uniform = {"d": {"kernel": np.random.default_rng(1).uniform(-1, 1, (64, 64))}}
    assert build_layout(uniform, SMHOptions(fraction=0.5)).bounded_init is True
    forced = build_layout(uniform, SMHOptions(fraction=0.5, init_range="normal"))
    assert forced.bounded_init is False


def test_target_params_counts_unhashed_and_scales():
    params = {"d": {"kernel": np.zeros((100, 100), np.float32)},
              "n": {"scale": np.ones(50, np.float32)}}
    layout = build_layout(params, SMHOptions(target_params=2000), frozenset({"n"}))
    # n = 100; budget for factors = 2000 - 50 unhashed - 1 scale = 1949 -> M = 10.
    assert layout.pool.side == 100 and layout.pool.rank == 10
    with pytest.raises(UserError, match="not above the 51 unhashed"):
        build_layout(params, SMHOptions(target_params=51), frozenset({"n"}))


def test_basic_index_store_must_cover_all_weights():
    params = {"d": {"kernel": np.zeros((100, 100), np.float32)}}
    with pytest.raises(UserError, match="'basic' needs the pool's 2500 virtual weights"):
        build_layout(params, SMHOptions(fraction=0.5, side=50))
    layout = build_layout(params, SMHOptions(fraction=0.5, side=50, index_store="cyclic"))
    assert layout.pool.virtual_size == 2500 and layout.num_hashed == 10_000


def test_layout_is_static_metadata_of_equal_value():
    a = build_layout(_params(), SMHOptions(fraction=0.5), frozenset({"norm"}))
    as_jax = tree_paths.nest([(p, jnp.asarray(v)) for p, v in tree_paths.ordered_items(_params())])
    b = build_layout(as_jax, SMHOptions(fraction=0.5), frozenset({"norm"}))
    assert a == b and hash(a) == hash(b)
    # jax.tree.map rebuilds dicts sorted: the creation order (and so the layout) is lost.
    resorted = build_layout(jax.tree.map(jnp.asarray, _params()), SMHOptions(fraction=0.5),
                            frozenset({"norm"}))
    assert resorted.hashed[0].path == "Dense_10/kernel" and resorted != a
    assert a.fingerprint()["pool"] == {"pool": "product", "n": 23, "M": 6}


def test_pool_is_sized_from_the_exact_decimal_fraction():
    params = {"w": np.random.default_rng(0).normal(size=(25, 25)).astype(np.float32)}
    layout = build_layout(params, SMHOptions(fraction=0.56))  # N = 625, T = 350 exactly
    assert (layout.pool.side, layout.pool.rank) == (25, 7)
    hashed = build_layout(params, SMHOptions(fraction=0.28, pool="hash"))
    assert hashed.pool.size == 175
