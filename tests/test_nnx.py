"""The Flax NNX path: the same layout as linen, the same numbers, NNX's own tools.

The linen and NNX models are the zoo's twins (smh_jax.models.nnx_*); "the same factors"
means the linen variables merged into the NNX structure by the trainer's bridge
(`LinenBridge.merge`), so every comparison below is exact to float tolerance.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from config_helpers import RESNET8, set_keys, tiny_config
from flax import nnx

import smh_jax
import smh_jax.nnx
from smh_jax import models
from smh_jax.core import tree_paths
from smh_jax.core.options import SMHOptions
from smh_jax.data import digits_source
from smh_jax.errors import UserError
from smh_jax.models.spec import abstract_variables, count_params
from smh_jax.nnx.linen_bridge import LinenBridge, to_variables
from smh_jax.training import config_base, trainer

DIGITS = (8, 8, 1)


def twins(name, fraction=0.25, shape=DIGITS, **kwargs):
    """(linen compressed, its variables, NNX bridge) of one zoo model at width 0.25."""
    kwargs = {"num_classes": 10, "width_multiplier": 0.25, **kwargs}
    linen = smh_jax.compress(models.create(name, **kwargs), fraction=fraction)
    variables = jax.jit(lambda: linen.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)},
        jnp.zeros((1, *shape)), train=False))()
    build = functools.partial(models.create_nnx, name, **kwargs)
    return linen, variables, LinenBridge(build, SMHOptions(fraction=fraction))


def nnx_compress(name, shape=DIGITS, fraction=0.25, seed=0, **options):
    return smh_jax.nnx.compress(
        lambda rngs: models.create_nnx(name, shape, rngs=rngs, num_classes=10,
                                       width_multiplier=0.25),
        fraction, rngs=nnx.Rngs(seed), **options)


@pytest.fixture(scope="module")
def built_resnet():
    """A compressed ResNet-20, built under nnx.jit (one compile, not one per eager op)."""
    return nnx.jit(lambda: nnx_compress("resnet8"))()


@pytest.fixture
def resnet(built_resnet):
    return nnx.clone(built_resnet)


def assert_trees_close(a, b, **tolerance):
    a, b = dict(tree_paths.ordered_items(a)), dict(tree_paths.ordered_items(b))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], err_msg="/".join(key), **tolerance)


# ----------------------------------------------------------------------------- layout


def test_the_nnx_lenet5_pools_either_way_to_the_same_logits():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 28, 28, 1)), jnp.float32)
    tiles, window = (models.create_nnx("lenet5", (28, 28, 1), rngs=nnx.Rngs(0),
                                       num_classes=10, max_pool=p) for p in ("tiles", "window"))
    assert (tiles.max_pool, window.max_pool) == ("tiles", "window")
    np.testing.assert_array_equal(tiles(x), window(x))


@pytest.mark.parametrize("name", ["resnet20", "lenet_300_100"])
def test_layout_and_materialized_weights_match_linen(name):
    linen, variables, bridge = twins(name)
    compressed = nnx.eval_shape(lambda: nnx_compress(name))
    linen_smh = variables["params"]["smh"]
    assert compressed.layout == linen_smh.layout  # paths, order, shapes, init stats, pool
    ours, theirs = compressed.accounting(), linen.accounting(variables["params"])
    for key in ("hashed_weights", "n", "M", "trainable", "dense_params"):
        assert ours[key] == theirs[key]
    same_factors = bridge.merge(variables, DIGITS)
    assert_trees_close(same_factors.materialize(), linen.materialize(variables["params"]),
                       rtol=0, atol=0)


class CreatedOutOfOrder(nnx.Module):
    """Creates zeta before alpha, and its list before the head it assigns first."""

    def __init__(self, rngs):
        self.zeta = nnx.Linear(4, 6, rngs=rngs)
        self.alpha = nnx.Linear(6, 5, rngs=rngs)
        layers = [nnx.Linear(5, 5, rngs=rngs) for _ in range(11)]
        self.head = nnx.Linear(5, 3, rngs=rngs)
        self.layers = nnx.List(layers)

    def __call__(self, x):
        x = self.alpha(self.zeta(x))
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class LinenCreatedOutOfOrder(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(5, name="alpha")(nn.Dense(6, name="zeta")(x))
        for i in range(11):
            x = nn.Dense(5, name=f"layers_{i}")(x)
        return nn.Dense(3, name="head")(x)


def test_tensors_are_tiled_in_creation_order_not_nnx_sorted_order():
    compressed = smh_jax.nnx.compress(CreatedOutOfOrder, fraction=0.5, rngs=nnx.Rngs(0))
    modules = [t.key[:-1] for t in compressed.layout.hashed][::2]
    assert modules == [("zeta",), ("alpha",), *[("layers", str(i)) for i in range(11)],
                       ("head",)]
    linen = smh_jax.compress(LinenCreatedOutOfOrder(), fraction=0.5)
    linen_layout = linen.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]["smh"].layout
    rename = {("layers", str(i)): (f"layers_{i}",) for i in range(11)}
    assert [(rename.get(t.key[:-1], t.key[:-1]) + t.key[-1:], t.shape, t.offset, t.init_std)
            for t in compressed.layout.hashed] == [
        (t.key, t.shape, t.offset, t.init_std) for t in linen_layout.hashed]


def test_normalization_layers_stay_unhashed_unless_asked():
    compressed = nnx.eval_shape(lambda: nnx_compress("resnet20"))
    assert not any("bn" in t.path for t in compressed.layout.hashed)
    assert nnx.state(compressed.model, nnx.Param)["bn1"]["scale"].shape == (4,)
    hashed_too = nnx.eval_shape(lambda: nnx_compress(
        "resnet20", hash_normalization=True, exclude="fc/"))
    stats = {t.path: (t.init_mean, t.init_std) for t in hashed_too.layout.hashed}
    assert stats["bn1/scale"] == (1.0, 0.0) and stats["bn1/bias"] == (0.0, 0.0)
    assert not any(path.startswith("fc/") for path in stats)


def test_parameter_without_a_known_initializer_is_measured_with_fixed_keys():
    class Custom(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(3.0 + 0.5 * jax.random.normal(rngs.params(), (64, 64)))

        def __call__(self, x):
            return x @ self.w

    eager = smh_jax.nnx.compress(Custom, 0.5, rngs=nnx.Rngs(0)).layout
    abstract = nnx.eval_shape(lambda: smh_jax.nnx.compress(Custom, 0.5, rngs=nnx.Rngs(5)))
    (tensor,) = eager.hashed
    assert tensor.init_mean == pytest.approx(3.0, abs=0.05)
    assert tensor.init_std == pytest.approx(0.5, rel=0.05)
    assert abstract.layout == eager  # the same statistics eagerly and traced, any seed


class TiedKernels(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(8, 8, rngs=rngs)
        self.b = nnx.Linear(8, 8, rngs=rngs)
        self.b.kernel = self.a.kernel

    def __call__(self, x):
        return self.b(self.a(x))


def test_a_tied_parameter_is_hashed_once_and_stays_tied():
    compressed = smh_jax.nnx.compress(TiedKernels, 0.5, rngs=nnx.Rngs(0))
    assert [t.path for t in compressed.layout.hashed] == ["a/kernel", "a/bias", "b/bias"]
    dense = compressed.dense_model()
    assert dense.a.kernel is dense.b.kernel


# ----------------------------------------------------------------------------- numbers


def test_loss_and_factor_gradients_match_linen():
    linen, variables, bridge = twins("resnet8")
    x = jax.random.normal(jax.random.key(2), (6, *DIGITS))
    labels = jnp.arange(6) % 10

    def linen_loss(params):
        logits, _ = linen.apply({**variables, "params": params}, x, train=True,
                                mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def nnx_loss(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()

    loss, grads = jax.jit(jax.value_and_grad(linen_loss))(variables["params"])
    model = bridge.merge(variables, DIGITS)
    model.train()
    nnx_value, nnx_grads = nnx.jit(nnx.value_and_grad(nnx_loss))(model)
    np.testing.assert_allclose(nnx_value, loss, rtol=1e-6)
    smh_grads = grads["smh"]
    ours = nnx.to_pure_dict(nnx_grads)
    assert_trees_close(ours["pool"], smh_grads.pool, rtol=1e-4, atol=1e-6)
    assert_trees_close(ours["modifiers"], smh_grads.modifiers, rtol=1e-4, atol=1e-6)
    assert_trees_close(ours["model"], smh_grads.unhashed, rtol=1e-4, atol=1e-6)


def digits(split):
    data = digits_source.read_split(split)
    return jnp.asarray(data.images(), jnp.float32) / 255.0, jnp.asarray(data.labels)


def test_200_nnx_optimizer_steps_reach_the_linen_accuracy():
    """nnx.Optimizer + nnx.jit against optax + jax.jit, from the same factors."""
    linen, variables, bridge = twins("lenet_300_100", fraction=0.5)
    tx = optax.sgd(0.1, momentum=0.9)
    (train_x, train_y), (test_x, test_y) = digits("train"), digits("test")
    order = np.random.default_rng(0)
    batches = [order.permutation(len(train_y))[:64] for _ in range(200)]

    def loss_of(logits, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def linen_step(params, opt_state, x, y):
        grads = jax.grad(lambda p: loss_of(linen.apply({"params": p}, x, train=True), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @nnx.jit
    def nnx_step(model, optimizer, x, y):
        grads = nnx.grad(lambda m: loss_of(m(x), y))(model)
        optimizer.update(model, grads)

    params, opt_state = variables["params"], tx.init(variables["params"])
    model = bridge.merge(variables, DIGITS)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for index in batches:
        params, opt_state = linen_step(params, opt_state, train_x[index], train_y[index])
        nnx_step(model, optimizer, train_x[index], train_y[index])
    linen_accuracy = jnp.mean(jnp.argmax(
        linen.apply({"params": params}, test_x, train=False), -1) == test_y)
    model.eval()
    nnx_accuracy = jnp.mean(jnp.argmax(model(test_x), -1) == test_y)
    assert linen_accuracy > 0.85
    assert abs(float(nnx_accuracy) - float(linen_accuracy)) <= 0.01


# ----------------------------------------------------------------------------- NNX tools


def test_batchnorm_trains_its_statistics_and_evaluates_with_them(resnet):
    compressed = resnet
    twin = nnx.clone(compressed)
    x = jax.random.normal(jax.random.key(3), (8, *DIGITS))
    compressed.train()
    y = compressed(x)
    dense = twin.dense_model()  # shares twin's batch statistics
    dense.train()
    np.testing.assert_allclose(y, dense(x), rtol=1e-5, atol=1e-6)
    moved = compressed.model.bn1.mean.get_value()
    assert float(jnp.abs(moved).max()) > 0
    np.testing.assert_allclose(moved, twin.model.bn1.mean.get_value(), rtol=1e-6)
    compressed.eval()
    before = nnx.state(compressed, nnx.BatchStat)
    evaluated = compressed(x)
    assert_trees_close(nnx.to_pure_dict(nnx.state(compressed, nnx.BatchStat)),
                       nnx.to_pure_dict(before), rtol=0, atol=0)
    dense.eval()
    np.testing.assert_allclose(evaluated, dense(x), rtol=1e-5, atol=1e-6)


def test_dropout_draws_from_the_models_rngs():
    compressed = smh_jax.nnx.compress(
        lambda rngs: models.create_nnx("mlp3", DIGITS, rngs=rngs, num_classes=10,
                                       width_multiplier=0.05),
        0.5, rngs=nnx.Rngs(params=0, dropout=1))
    x = jnp.ones((4, *DIGITS))
    nnx.reseed(compressed, dropout=7)
    first, second = compressed(x), compressed(x)
    assert not np.allclose(first, second)
    nnx.reseed(compressed, dropout=7)
    np.testing.assert_array_equal(compressed(x), first)
    compressed.eval()
    np.testing.assert_array_equal(compressed(x), compressed(x))


def test_jit_split_merge_and_closure_give_the_eager_output(resnet):
    compressed = resnet
    compressed.eval()
    x = jax.random.normal(jax.random.key(4), (2, *DIGITS))
    eager = compressed(x)
    graphdef, state = nnx.split(compressed)
    jitted = [nnx.jit(lambda m, x: m(x))(compressed, x),
              jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x),
              jax.jit(lambda x: compressed(x))(x)]  # eval mode mutates nothing
    for output in jitted:
        np.testing.assert_allclose(output, eager, rtol=1e-5, atol=1e-6)


def test_orbax_round_trip_into_a_fresh_compressed_model(resnet, tmp_path):
    compressed = resnet
    forward = nnx.jit(lambda model, x: model(x))
    x = jax.random.normal(jax.random.key(5), (4, *DIGITS))
    compressed.train()
    forward(compressed, x)  # moves the batch statistics away from their init
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", nnx.state(compressed))
    checkpointer.wait_until_finished()
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: nnx_compress("resnet8", seed=9)))
    restored = nnx.merge(graphdef, checkpointer.restore(tmp_path / "state", abstract))
    compressed.eval()
    restored.eval()
    np.testing.assert_array_equal(forward(restored, x), forward(compressed, x))
    assert_trees_close(nnx.to_pure_dict(nnx.state(restored)),
                       nnx.to_pure_dict(nnx.state(compressed)), rtol=0, atol=0)


def test_bridge_variables_are_the_linen_wrappers():
    linen, variables, bridge = twins("resnet8")
    ours = jax.jit(lambda: bridge.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, jnp.zeros((1, *DIGITS))))()
    assert jax.tree.structure(ours) == jax.tree.structure(variables)
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, variables)
    assert_trees_close(to_variables(bridge.merge(variables, DIGITS)), variables, rtol=0, atol=0)


# ----------------------------------------------------------------------------- zoo


@pytest.mark.parametrize("name", models.nnx_names())
def test_nnx_twin_has_the_linen_models_counts(name):
    shape = (32, 32, 3) if name.startswith("resnet") else (28, 28, 1)
    linen = abstract_variables(models.create(name, num_classes=10, width_multiplier=0.5),
                               (1, *shape))
    twin = nnx.eval_shape(lambda: models.create_nnx(name, shape, rngs=nnx.Rngs(0),
                                                    num_classes=10, width_multiplier=0.5))
    ours = to_variables(twin)
    for collection in ("params", "batch_stats"):
        assert (jax.tree.map(jnp.shape, ours.get(collection, {}))
                == jax.tree.map(jnp.shape, linen.get(collection, {})))
    assert count_params(ours["params"]) == count_params(linen["params"])


# ----------------------------------------------------------------------------- errors


class NoParameters(nnx.Module):
    def __init__(self, rngs):
        self.dropout = nnx.Dropout(0.5, rngs=rngs)


@pytest.mark.parametrize("build, message", [
    (NoParameters, "NoParameters has no parameters to compress"),
    (42, "takes a function that builds the model from rngs"),
    (models.create("mlp"), "MLP is a flax.linen Module: use smh_jax.compress"),
    (CreatedOutOfOrder(nnx.Rngs(0)), "not a built CreatedOutOfOrder"),
    (lambda rngs: "a model", "the builder returned a str, not an nnx.Module"),
    (lambda rngs: models.create("mlp"), "returned a flax.linen MLP: use smh_jax.compress"),
])
def test_wrong_input_to_nnx_compress_says_what_to_pass(build, message):
    with pytest.raises(UserError, match=message):
        smh_jax.nnx.compress(build, 0.5, rngs=nnx.Rngs(0))


def test_nnx_model_passed_to_linen_compress_points_to_nnx_compress():
    with pytest.raises(UserError, match="is an NNX module: use smh_jax.nnx.compress"):
        smh_jax.compress(CreatedOutOfOrder(nnx.Rngs(0)), fraction=0.5)


@pytest.mark.parametrize("options", [{"fraction": 1.5}, {"fraction": 0.5, "pol": "hash"},
                                     {"fraction": 0.5, "include": "("}])
def test_options_are_validated_as_in_linen(options):
    with pytest.raises(UserError) as linen_error:
        smh_jax.compress(models.create("mlp"), **options)
    with pytest.raises(UserError) as nnx_error:
        smh_jax.nnx.compress(CreatedOutOfOrder, rngs=nnx.Rngs(0), **options)
    assert str(nnx_error.value) == str(linen_error.value)


@pytest.mark.parametrize("overrides, message", [
    ({"model.api": "jax"}, "config.model.api: 'jax' is not one of linen, nnx"),
    ({"model.api": "nnx", "model.name": "efficientnet_b0"}, "has no NNX twin"),
])
def test_config_model_api_is_validated(overrides, message):
    config = set_keys(config_base.base_config(), overrides)
    with pytest.raises(UserError, match=message):
        config_base.validate(config)


# ----------------------------------------------------------------------------- trainer


def test_trainer_runs_the_nnx_twin_and_linen_evaluates_its_checkpoint(tmp_path):
    # ResNet-8: the bridge's BatchNorm statistics go through the loop and the checkpoint.
    config = tiny_config(**{**RESNET8, "model.api": "nnx", "checkpoint_every_steps": 4})
    summary = trainer.train_and_evaluate(config, str(tmp_path))
    assert summary["method"] == "smh" and summary["steps"] == 4
    config.model.api = "linen"
    experiment, state, _ = trainer.restore_for_eval(config, str(tmp_path))
    from smh_jax.training.experiment import jit_steps

    metrics = trainer.evaluate(experiment, jit_steps(experiment)[1], state.eval_variables(False))
    assert metrics["accuracy"] == summary["accuracy"]
    assert metrics["loss"] == pytest.approx(summary["eval_loss"], rel=1e-5)
