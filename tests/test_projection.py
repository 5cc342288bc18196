"""Warm start from a dense model: the projection is the Eckart-Young optimum, exact at low
rank, refuses what it cannot project, loads both dense formats, and train.py starts from it."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from config_helpers import RESNET8, tiny_config

import smh_jax
from smh_jax.core import projection, tree_paths
from smh_jax.core.options import SMHOptions
from smh_jax.errors import UserError
from smh_jax.formats import dense_export as export
from smh_jax.formats import warm_start
from smh_jax.linen.compress import build_model_layout
from smh_jax.models.spec import ModelSpec, abstract_variables
from smh_jax.training import checkpointing
from smh_jax.training import experiment as experiment_lib
from smh_jax.training.train_state import new_state

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class SmallCNN(nn.Module):
    """Convs with biases, BatchNorm and a Dense head: slices straddle rows of the tiling."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train)
        x = nn.relu(norm()(nn.Conv(6, (3, 3))(x)))
        x = nn.relu(norm()(nn.Conv(10, (3, 3), strides=2)(x)))
        return nn.Dense(5)(x.mean(axis=(1, 2)))


class RowMLP(nn.Module):
    """Four 8x8 kernels, N = 256 = 16 x 16: each kernel is exactly 4 rows of the tiling."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        for _ in range(4):
            x = nn.Dense(8, use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
        return x


RNG = jax.random.key(0)


def _trained_like(variables, seed=1):
    """A 'trained' dense model: every parameter random with its own per-layer scale."""
    rng = np.random.default_rng(seed)
    params = [(p, (rng.normal(size=leaf.shape) * rng.uniform(0.01, 3.0)).astype(np.float32))
              for p, leaf in tree_paths.ordered_items(variables["params"])]
    return {**variables, "params": tree_paths.nest(params)}


def _x(model):
    return jnp.ones((2, 8, 8, 3)) if isinstance(model, SmallCNN) else jnp.ones((3, 8))


@functools.lru_cache(maxsize=None)
def _sample(model):
    """The model's own (dense) variables (one compile per model, shared by the tests)."""
    return jax.jit(model.init)(RNG, _x(model))


def _layout(model, **options):
    """The layout `compress(model, **options)` builds (shapes only, no compute)."""
    return build_model_layout(model, SMHOptions(**options), _x(model))


def _materialized(params):
    return jax.tree.map(np.asarray, smh_jax.materialize(params, jnp.float32))


@pytest.mark.parametrize("parameterization", ["norm", "direct"])
def test_projection_is_the_optimal_rank_m_approximation(parameterization):
    dense = _trained_like(_sample(SmallCNN()))
    layout = _layout(SmallCNN(), fraction=0.3, scale_parameterization=parameterization)
    projected = projection.project(layout, dense["params"])

    # Independently: tile W_l / RMS(W_l) row-major, numpy SVD, keep M singular values.
    n, m = layout.pool.side, layout.pool.rank
    flat_dense = {tree_paths.path_str(p): v for p, v in tree_paths.ordered_items(dense["params"])}
    tiled, rms = np.zeros(n * n), []
    for t in layout.hashed:
        w = flat_dense[t.path].astype(np.float64).reshape(-1)
        rms.append(np.sqrt(np.mean(w ** 2)))
        tiled[t.offset:t.offset + t.size] = w / rms[-1]
    u, s, vt = np.linalg.svd(tiled.reshape(n, n))
    best = (u[:, :m] * s[:m]) @ vt[:m]
    virtual = np.asarray(projected.pool["a"], np.float64) @ np.asarray(projected.pool["b"])
    assert 1 <= m < n and np.linalg.matrix_rank(tiled.reshape(n, n)) > m
    np.testing.assert_allclose(virtual, best, atol=1e-5)

    # Each layer is its slice of that matrix times the least-squares scale, which beats
    # the plain RMS scale (the point of the refit) and any perturbation of it.
    weights = _materialized(projected)
    flat_weights = {tree_paths.path_str(p): v for p, v in tree_paths.ordered_items(weights)}
    for t, r in zip(layout.hashed, rms, strict=True):
        piece = best.reshape(-1)[t.offset:t.offset + t.size]
        w = flat_dense[t.path].reshape(-1)
        scale = piece @ w / (piece @ piece)
        np.testing.assert_allclose(flat_weights[t.path].reshape(-1), scale * piece, atol=1e-5,
                                   rtol=1e-4)
        errors = {s: np.sum((w - s * piece) ** 2) for s in (scale, r, 1.01 * scale, 0.99 * scale)}
        assert errors[scale] <= errors[r] + 1e-9
        assert errors[scale] < min(errors[1.01 * scale], errors[0.99 * scale])
    # Unhashed parameters (BatchNorm) are the dense model's, untouched.
    for key, hashed in layout.param_order:
        if not hashed:
            path = tree_paths.path_str(key)
            np.testing.assert_array_equal(flat_weights[path], flat_dense[path])


def test_device_svd_matches_the_host_svd():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(40, 40)) * np.geomspace(1, 1e-3, 40)
    host = projection.rank_factors(matrix, 7, on_device=False)
    device = projection.rank_factors(matrix, 7, on_device=True)
    np.testing.assert_allclose(device[0] @ device[1], host[0] @ host[1], atol=1e-5)
    padded = projection.rank_factors(matrix[:5, :5], 7, on_device=False)
    assert padded[0].shape == (5, 7) and not padded[0][:, 5:].any()
    np.testing.assert_allclose(padded[0] @ padded[1], matrix[:5, :5], atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"scale_parameterization": "direct"},
                                     {"learn_scale": False},
                                     {"modifiers": ("fan_out_scale", "learned_scalar")}])
def test_model_of_rank_at_most_m_is_recovered_exactly(options):
    x = jnp.ones((3, 8))
    variables = _sample(RowMLP())
    compressed = smh_jax.compress(RowMLP(), fraction=0.25, **options)
    layout = _layout(RowMLP(), fraction=0.25, **options)
    assert (layout.pool.side, layout.pool.rank) == (16, 2)
    # A rank-2 16 x 16 matrix whose 4-row blocks become the kernels, each block with its
    # own scale: per-layer normalization scales rows, so the rank stays 2.
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(16, 2)) @ rng.normal(size=(2, 16))
    kernels = iter(low_rank[4 * i:4 * i + 4].reshape(8, 8) * 10.0 ** (i - 2) for i in range(4))
    params = jax.tree.map(lambda v: v, variables["params"])
    for name in params:
        if "kernel" in params[name]:
            params[name]["kernel"] = np.asarray(next(kernels), np.float32)
    dense = {**variables, "params": params}
    projected = projection.project(layout, params)
    pairs = zip(jax.tree.leaves(_materialized(projected)), jax.tree.leaves(params), strict=True)
    for got, want in pairs:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7 * np.abs(want).max())
    logits = compressed.apply({"params": {"smh": projected}, "batch_stats":
                               dense["batch_stats"]}, x)
    np.testing.assert_allclose(logits, RowMLP().apply(dense, x), rtol=1e-4, atol=1e-5)
    assert projection.relative_errors(projected, params)["overall"] < 1e-5


def test_mismatched_dense_params_name_the_path():
    dense = _sample(SmallCNN())["params"]
    layout = _layout(SmallCNN(), fraction=0.3)
    missing = {**dense, "Conv_1": {"kernel": dense["Conv_1"]["kernel"]}}
    with pytest.raises(UserError, match="'Conv_1/bias' is missing"):
        projection.project(layout, missing)
    wrong = {**dense, "Dense_0": {**dense["Dense_0"], "kernel": np.zeros((10, 4))}}
    with pytest.raises(UserError, match=r"'Dense_0/kernel' has shape \(10, 4\).*\(10, 5\)"):
        projection.project(layout, wrong)
    with pytest.raises(UserError, match="'Extra_0/kernel' is not a parameter"):
        projection.project(layout, {**dense, "Extra_0": {"kernel": np.zeros(3)}})


@pytest.mark.parametrize("options, message", [
    ({"pool": "kronecker"}, "'kronecker' cannot be initialized from a dense model"),
    ({"pool": "hash"}, "'hash' cannot be initialized"),
    ({"modifiers": ("scale", "relu")}, "'relu' is not linear"),
    ({"side": 12, "index_store": "cyclic"}, "does not cover the"),
])
def test_what_cannot_be_projected_is_refused(options, message):
    dense = _sample(SmallCNN())["params"]
    with pytest.raises(UserError, match=message):
        projection.project(_layout(SmallCNN(), fraction=0.3, **options), dense)


# ----------------------------------------------------------------------------- loading


def _digits_config(**overrides):
    return tiny_config(**{**RESNET8, "num_steps": 1, "async_checkpointing": False, **overrides})


@pytest.fixture(scope="module")
def dense_sources(tmp_path_factory):
    """A dense ResNet-8 (x0.25) as an export directory and as a train.py workdir."""
    root = tmp_path_factory.mktemp("dense")
    spec = ModelSpec("resnet8", num_classes=10, width_multiplier=0.25)
    shapes = abstract_variables(spec.create(), (1, 8, 8, 1))
    variables = _trained_like(shapes)
    variables["batch_stats"] = jax.tree.map(lambda v: np.full(v.shape, 5.0, np.float32),
                                            variables["batch_stats"])
    export.export_dense(str(root / "export"), variables, spec)
    state = new_state(variables["params"], {"batch_stats": variables["batch_stats"]}, {},
                      jax.random.key(0), use_ema=False)
    ckpt = checkpointing.Checkpointer(str(root / "workdir" / "checkpoints"), max_to_keep=1,
                                      async_save=False)
    ckpt.save(7, state, {"step": 7}, {"smh": None})
    ckpt.close()
    return root, variables


def test_both_dense_formats_load_the_same_variables(dense_sources, tmp_path):
    root, variables = dense_sources
    for source in ("export", "workdir"):
        loaded = warm_start.load_dense_variables(str(root / source))
        assert jax.tree.structure(loaded) == jax.tree.structure(variables)
        for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables), strict=True):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(UserError, match="neither an eval.py --export_dense directory"):
        warm_start.load_dense_variables(str(tmp_path))
    ckpt = checkpointing.Checkpointer(str(tmp_path / "smh" / "checkpoints"), max_to_keep=1,
                                      async_save=False)
    ckpt.save(1, {"x": jnp.zeros(2)}, {"step": 1}, {"smh": {"pool": "product"}})
    ckpt.close()
    with pytest.raises(UserError, match="workdir of an SMH run"):
        warm_start.load_dense_variables(str(tmp_path / "smh"))


def test_train_starts_from_the_projection(dense_sources):
    root, variables = dense_sources
    source = str(root / "workdir")
    experiment = experiment_lib.build_experiment(_digits_config(**{"smh.init_from_dense": source}))
    state = jax.device_get(experiment_lib.initial_state(experiment))
    params = state.params["smh"]
    expected = projection.project(params.layout, variables["params"])
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(got, want)
    # batch_stats are the dense model's (5.0 everywhere), not a fresh init's.
    assert all(np.all(v == 5.0) for v in jax.tree.leaves(state.model_state))


def test_init_from_dense_errors_name_the_setting(dense_sources):
    source = str(dense_sources[0] / "export")
    config = _digits_config(**{"smh.init_from_dense": source, "smh.pool": "kronecker"})
    with pytest.raises(UserError, match=r"init_from_dense=.*'kronecker' cannot be initialized"):
        experiment_lib.warm_start(experiment_lib.build_experiment(config))
