"""The Flax wrapper: one-line compression of a model written here, same API as the original."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import smh_jax
from smh_jax.errors import UserError

he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class SmallCNN(nn.Module):
    """A user's own model: nothing SMH-specific in it."""

    num_classes: int = 10
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        x = nn.Conv(self.width, (3, 3), use_bias=False, kernel_init=he_normal, name="stem")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        x = nn.Conv(2 * self.width, (3, 3), strides=2, use_bias=False, kernel_init=he_normal)(x)
        x = nn.relu(norm()(x))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def _data(n=64, seed=0):
    """A learnable toy task: the label is the quadrant holding the brightest pixel."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype(np.float32)
    flat = x.sum(-1).reshape(n, -1).argmax(-1)
    row, col = flat // 8, flat % 8
    return jnp.asarray(x), jnp.asarray((row >= 4) * 2 + (col >= 4))


def test_same_outputs_and_collections_as_the_original():
    model = SmallCNN()
    compressed = smh_jax.compress(model, fraction=0.25)
    x, _ = _data(4)
    dense_vars = model.init(RNGS, x)
    variables = compressed.init(RNGS, x)
    assert set(variables) == set(dense_vars) == {"params", "batch_stats"}
    # batch_stats pass through untouched, laid out exactly as the original's.
    assert jax.tree.structure(variables["batch_stats"]) == jax.tree.structure(
        dense_vars["batch_stats"])
    y, updates = compressed.apply(variables, x, rngs={"dropout": jax.random.key(2)},
                                  mutable=["batch_stats"])
    assert y.shape == model.apply(dense_vars, x, train=False).shape == (4, 10)
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
        dense_vars["batch_stats"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                           variables["batch_stats"])
    assert all(jax.tree.leaves(changed))
    # Unhashed BatchNorm scale/bias are ordinary parameters, kept as the original has them.
    unhashed = variables["params"]["smh"].unhashed
    assert set(unhashed) == {"stem_bn", "BatchNorm_0"}
    np.testing.assert_array_equal(unhashed["stem_bn"]["scale"], np.ones(16))


def test_materialize_gives_params_the_plain_model_accepts():
    model = SmallCNN()
    compressed = smh_jax.compress(model, fraction=0.25)
    x, _ = _data(4)
    variables = compressed.init(RNGS, x)
    dense = compressed.materialize(variables["params"])
    assert jax.tree.map(jnp.shape, dense) == jax.tree.map(jnp.shape, model.init(RNGS, x)["params"])
    np.testing.assert_allclose(
        compressed.apply(variables, x, train=False),
        model.apply({"params": dense, "batch_stats": variables["batch_stats"]}, x, train=False),
        rtol=1e-5, atol=1e-5)


def test_eager_jit_and_shape_init_agree_on_structure():
    compressed = smh_jax.compress(SmallCNN(), fraction=0.25)
    x, _ = _data(4)
    eager = compressed.init(RNGS, x)
    jitted = jax.jit(compressed.init)(RNGS, x)
    abstract = jax.eval_shape(compressed.init, RNGS, x)
    assert jax.tree.structure(eager) == jax.tree.structure(jitted) == jax.tree.structure(abstract)
    np.testing.assert_allclose(eager["params"]["smh"].pool["a"], jitted["params"]["smh"].pool["a"],
                               rtol=1e-6)


def test_accounting_reports_exact_sizes():
    model = SmallCNN()
    compressed = smh_jax.compress(model, fraction=0.25)
    x, _ = _data(4)
    variables = compressed.init(RNGS, x)
    info = compressed.accounting(variables["params"])
    dense_count = sum(a.size for a in jax.tree.leaves(model.init(RNGS, x)["params"]))
    # Hashed: stem 3*3*3*16, conv 3*3*16*32, dense 32*10 + 10; unhashed: 2 BatchNorms.
    num_hashed = 432 + 4608 + 320 + 10
    assert info["hashed_weights"] == num_hashed
    assert info["n"] == 74 and info["M"] == int(np.ceil(0.25 * num_hashed / (2 * 74)))
    assert info["factors"] == 2 * info["n"] * info["M"]
    assert info["scales"] == 4 and info["unhashed"] == 2 * 16 + 2 * 32
    assert info["dense_params"] == dense_count
    assert info["trainable"] == info["factors"] + 4 + 96 == sum(
        a.size for a in jax.tree.leaves(variables["params"]))
    assert info["fraction"] == pytest.approx(info["trainable"] / dense_count)
    assert [t["path"] for t in info["tensors"]] == [
        "stem/kernel", "Conv_0/kernel", "Dense_0/kernel", "Dense_0/bias"]
    text = compressed.summary(variables["params"])
    assert "stem/kernel" in text and f"{info['trainable']:,}" in text


class WideCNN(nn.Module):
    """Large enough layers to measure init statistics on."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(64, (3, 3), use_bias=False, kernel_init=he_normal)(x)
        x = nn.Conv(64, (3, 3), use_bias=False, kernel_init=he_normal)(x)
        x = nn.Conv(128, (3, 3), use_bias=False,
                    kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "uniform"))(x)
        return nn.Dense(256, kernel_init=nn.initializers.normal(0.05))(x.mean((1, 2)))


def test_virtual_entries_have_unit_std_and_layers_their_own_init_std():
    model = WideCNN()
    compressed = smh_jax.compress(model, fraction=0.1)
    x = jnp.zeros((1, 8, 8, 3))
    variables = compressed.init(jax.random.key(3), x)
    params = variables["params"]["smh"]
    virtual = np.asarray(smh_jax.core.materialize.virtual_weights(params))
    virtual = virtual[:params.layout.num_hashed]
    assert abs(virtual.std() - 1.0) < 0.03 and abs(virtual.mean()) < 0.03
    dense = compressed.materialize(variables["params"])
    reference = model.init(jax.random.key(4), x)["params"]  # a fresh draw of the original init
    for name in ("Conv_0", "Conv_1", "Conv_2", "Dense_0"):
        got, want = float(dense[name]["kernel"].std()), float(reference[name]["kernel"].std())
        assert abs(got / want - 1.0) < 0.10, (name, got, want)


def test_gradients_reach_factors_scales_and_unhashed():
    compressed = smh_jax.compress(SmallCNN(), fraction=0.25)
    x, y = _data(8)
    variables = compressed.init(RNGS, x)

    def loss(params):
        logits, _ = compressed.apply({**variables, "params": params}, x, mutable=["batch_stats"],
                                     rngs={"dropout": jax.random.key(0)})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss)(variables["params"])["smh"]
    for name, leaf in [("a", grads.pool["a"]), ("b", grads.pool["b"]),
                       ("scale", grads.modifiers["scale"]),
                       ("bn", grads.unhashed["stem_bn"]["scale"])]:
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).max()) > 0, name


@pytest.mark.parametrize("learn_scale", [True, False])
def test_one_line_compression_trains(learn_scale):
    """A model written here, compressed to 25% in one line; loss falls over 50 CPU steps."""
    compressed = smh_jax.compress(SmallCNN(), fraction=0.25, learn_scale=learn_scale)
    x, y = _data(256)
    variables = compressed.init(RNGS, x[:8])
    tx = optax.sgd(optax.cosine_decay_schedule(0.1, 50), momentum=0.9, nesterov=True)
    opt_state = tx.init(variables["params"])

    @jax.jit
    def step(params, batch_stats, opt_state, rng, xb, yb):
        def loss_fn(p):
            logits, updates = compressed.apply({"params": p, "batch_stats": batch_stats}, xb,
                                               rngs={"dropout": rng}, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), updates
        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), updates["batch_stats"], opt_state, loss

    params, batch_stats, losses = variables["params"], variables["batch_stats"], []
    for i in range(50):
        idx = slice((i * 32) % 256, (i * 32) % 256 + 32)
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state,
                                                    jax.random.key(i), x[idx], y[idx])
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("kwargs,message", [
    ({"fraction": 0.0}, r"smh.fraction: 0.0 is outside the allowed range \(0, 1\]"),
    ({"fraction": 1.5}, r"smh.fraction: 1.5 is outside"),
    ({"fraction": -0.1}, r"smh.fraction: -0.1 is outside"),
    ({"fraction": "half"}, r"smh.fraction: 'half' is not a number"),
    ({"fraction": None}, r"give exactly one of fraction"),
    ({"fraction": 0.5, "pool": "bloom"}, r"smh.pool: 'bloom' is not one of"),
    ({"fraction": 0.5, "modifiers": ("scale", "tanh")}, r"smh.modifiers: 'tanh' is not one of"),
])
def test_option_errors_name_the_value(kwargs, message):
    with pytest.raises(UserError, match=message):
        smh_jax.compress(SmallCNN(), **kwargs)


def test_init_errors_name_the_value():
    x, _ = _data(2)
    with pytest.raises(UserError, match="smallest allowed fraction is 0.02"):
        # N = 5370 -> n = 74: M = 1 needs 148 variables = 0.0276 of N; 0.001 is too small.
        smh_jax.compress(SmallCNN(), fraction=0.001).init(RNGS, x)
    with pytest.raises(UserError, match="select no parameter"):
        smh_jax.compress(SmallCNN(), fraction=0.5, include="attention").init(RNGS, x)
    with pytest.raises(UserError, match="only floating-point"):
        smh_jax.compress(IntParamModel(), fraction=0.5, include=".").init(RNGS, x)


class IntParamModel(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        self.param("table", lambda rng: jnp.arange(4, dtype=jnp.int32))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))
