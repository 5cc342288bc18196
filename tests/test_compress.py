"""The Flax wrapper: one-line compression of a model written here, same API as the original."""

import functools

import flax.linen as nn
import jax
import jax.extend.core as jax_core
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
    dense_vars = jax.jit(model.init)(RNGS, x)
    variables = jax.jit(compressed.init)(RNGS, x)
    assert set(variables) == set(dense_vars) == {"params", "batch_stats"}
    # batch_stats pass through untouched, laid out exactly as the original's.
    assert jax.tree.structure(variables["batch_stats"]) == jax.tree.structure(
        dense_vars["batch_stats"])
    y, updates = jax.jit(functools.partial(compressed.apply, mutable=["batch_stats"]))(
        variables, x, rngs={"dropout": jax.random.key(2)})
    dense_y = jax.eval_shape(functools.partial(model.apply, train=False), dense_vars, x)
    assert y.shape == dense_y.shape == (4, 10)
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
    variables = jax.jit(compressed.init)(jax.random.key(3), x)
    params = variables["params"]["smh"]
    virtual = np.asarray(smh_jax.core.materialize.virtual_weights(params))
    virtual = virtual[:params.layout.num_hashed]
    assert abs(virtual.std() - 1.0) < 0.03 and abs(virtual.mean()) < 0.03
    dense = compressed.materialize(variables["params"])
    reference = jax.jit(model.init)(jax.random.key(4), x)["params"]  # a fresh original init
    for name in ("Conv_0", "Conv_1", "Conv_2", "Dense_0"):
        got, want = float(dense[name]["kernel"].std()), float(reference[name]["kernel"].std())
        assert abs(got / want - 1.0) < 0.10, (name, got, want)


def test_gradients_reach_factors_scales_and_unhashed():
    compressed = smh_jax.compress(SmallCNN(), fraction=0.25)
    x, y = _data(8)
    variables = jax.jit(compressed.init)(RNGS, x)

    def loss(params):
        logits, _ = compressed.apply({**variables, "params": params}, x, mutable=["batch_stats"],
                                     rngs={"dropout": jax.random.key(0)})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.jit(jax.grad(loss))(variables["params"])["smh"]
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


# ----------------------------------------------------------------------------- the wrapper's
# promises: what `init`, `apply` and `materialize` give for any linen model


class TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="out")(nn.relu(nn.Dense(16, name="hidden")(x)))


def test_init_forward_pass_runs_the_materialized_weights():
    compressed = smh_jax.compress(TwoLayer(), fraction=0.5)
    x = jax.random.normal(jax.random.key(1), (4, 8))
    output, variables = compressed.init_with_output(jax.random.key(0), x)
    np.testing.assert_array_equal(output, compressed.apply(variables, x))


class GainNorm(nn.Module):
    """A hand-written norm layer: its gain starts at ones (not a Flax normalization type)."""

    @nn.compact
    def __call__(self, x):
        gain = self.param("gain", nn.initializers.ones, (x.shape[-1],))
        return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * gain


class ShiftedNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = GainNorm(name="norm")(nn.Dense(32, name="d1")(x))
        h = nn.Dense(32, kernel_init=nn.initializers.uniform(0.1), name="d2")(nn.relu(h))
        return nn.Dense(4, name="d3")(h)


def _fit(compressed, x, y, steps=60):
    params = jax.jit(compressed.init)(jax.random.key(3), x)["params"]
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean((compressed.apply({"params": p}, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state)
    return params, float(loss)


def test_constant_and_nonzero_mean_inits_start_at_their_mean_and_train():
    compressed = smh_jax.compress(ShiftedNet(), fraction=0.5)
    x = jax.random.normal(jax.random.key(0), (64, 8))
    variables = jax.jit(compressed.init)(jax.random.key(3), x)
    start = compressed.materialize(variables["params"])
    np.testing.assert_array_equal(start["norm"]["gain"], np.ones(32))  # exactly its constant
    d2 = np.asarray(start["d2"]["kernel"])  # uniform(0.1) is U[0, 0.1): mean 0.05
    assert abs(d2.mean() - 0.05) < 0.005 and abs(d2.std() - 0.1 / np.sqrt(12)) < 0.005
    y = jax.random.normal(jax.random.key(1), (64, 4))
    params, _ = _fit(compressed, x, y)
    gain = np.asarray(compressed.materialize(params)["norm"]["gain"])
    assert np.abs(gain - 1.0).max() > 1e-3  # the gain trained


def test_zero_mean_inits_are_the_papers_scale_times_slice_exactly():
    compressed = smh_jax.compress(TwoLayer(), fraction=0.5)
    variables = compressed.init(jax.random.key(0), jnp.ones((1, 8)))
    params = variables["params"]["smh"]
    assert all(t.init_mean == 0.0 for t in params.layout.hashed)
    virtual = smh_jax.core.materialize.virtual_weights(params)
    scales = smh_jax.core.modifiers.multipliers(params.layout, params.modifiers)["scale"]
    t = params.layout.hashed[0]
    np.testing.assert_array_equal(
        compressed.materialize(variables["params"])["hidden"]["kernel"],
        (virtual[t.offset:t.offset + t.size] * scales[0]).reshape(t.shape))


def test_frozen_scales_let_every_tensor_learn():
    compressed = smh_jax.compress(ShiftedNet(), fraction=0.5, learn_scale=False)
    x = jax.random.normal(jax.random.key(0), (64, 8))
    layout = compressed.init(jax.random.key(3), x)["params"]["smh"].layout
    frozen = {t.path: smh_jax.core.modifiers.frozen_scale(t, layout) for t in layout.hashed}
    assert all(scale > 0 for scale in frozen.values()), frozen
    # A zero-std tensor's fixed scale is the model's typical init std; a nonzero constant's
    # is capped at 5% of the constant.
    assert frozen["d1/bias"] == pytest.approx(layout.reference_std)
    assert frozen["norm/gain"] <= 0.05
    params, _ = _fit(compressed, x, jax.random.normal(jax.random.key(1), (64, 4)))
    trained = compressed.materialize(params)
    for name in ("d1", "d3"):
        assert float(jnp.abs(trained[name]["bias"]).max()) > 0.01, name


def _literal_zero_multiplications(jaxpr) -> int:
    count = sum(1 for eqn in jaxpr.eqns if eqn.primitive.name == "mul"
                for var in eqn.invars
                if isinstance(var, jax_core.Literal) and np.all(np.asarray(var.val) == 0))
    return count + sum(_literal_zero_multiplications(sub) for sub in jax_core.subjaxprs(jaxpr))


def test_frozen_scales_put_no_zero_multiplier_into_the_step():
    """A literal `x * 0.0` (a frozen zero scale) sends XLA:CPU into a slow fusion."""
    compressed = smh_jax.compress(TwoLayer(), fraction=0.5, learn_scale=False)
    x = jnp.ones((4, 8))
    params = compressed.init(jax.random.key(0), x)["params"]
    grad = jax.grad(lambda p: jnp.sum(compressed.apply({"params": p}, x)))
    assert _literal_zero_multiplications(jax.make_jaxpr(grad)(params).jaxpr) == 0


class Partitioned(nn.Module):
    @nn.compact
    def __call__(self, x):
        kernel = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        x = nn.Dense(16, kernel_init=kernel, name="d")(x)
        scale = nn.with_logical_partitioning(nn.initializers.ones, ("mlp",))
        x = nn.LayerNorm(scale_init=scale, name="ln")(x)
        kernel = nn.with_partitioning(nn.initializers.lecun_normal(), ("model", None))
        return nn.Dense(4, kernel_init=kernel, name="out")(x)


def test_partitioned_params_are_hashed_by_value_and_keep_their_boxes():
    compressed = smh_jax.compress(Partitioned(), fraction=0.5)
    x = jnp.ones((2, 8))
    variables = compressed.init(jax.random.key(0), x)
    layout = variables["params"]["smh"].layout
    assert [t.path for t in layout.hashed] == ["d/kernel", "d/bias", "out/kernel", "out/bias"]
    dense = compressed.materialize(variables["params"])
    assert isinstance(dense["d"]["kernel"], nn.LogicallyPartitioned)
    assert dense["d"]["kernel"].names == ("embed", "mlp")
    assert isinstance(dense["out"]["kernel"], nn.Partitioned)
    assert dense["out"]["kernel"].names == ("model", None)
    assert dense["ln"]["scale"].names == ("mlp",)  # unhashed: kept as the model made it
    np.testing.assert_allclose(compressed.apply(variables, x),
                               Partitioned().apply({"params": dense}, x), rtol=1e-6)


class ParamDtypeNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, param_dtype=jnp.bfloat16, name="d1")(x)
        return nn.Dense(4, name="d2")(nn.relu(x))  # float32 params


@pytest.mark.parametrize("smh_dtype", ["float32", "bfloat16"])
def test_each_hashed_tensor_keeps_its_parameter_dtype(smh_dtype):
    model = ParamDtypeNet()
    compressed = smh_jax.compress(model, fraction=0.5, dtype=smh_dtype)
    x = jnp.ones((2, 8), jnp.bfloat16)
    variables = compressed.init(jax.random.key(0), x)
    dense = compressed.materialize(variables["params"])
    assert dense["d1"]["kernel"].dtype == jnp.bfloat16
    assert dense["d2"]["kernel"].dtype == jnp.float32
    assert (compressed.apply(variables, x).dtype
            == model.apply(model.init(jax.random.key(0), x), x).dtype)


class NoParams(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x * 2


class SlashName(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x @ self.param("a/b", nn.initializers.normal(1.0), (x.shape[-1], 4))


def test_a_model_without_parameters_is_a_clear_error():
    with pytest.raises(UserError, match="smh: NoParams has no parameters to compress"):
        smh_jax.compress(NoParams(), fraction=0.5).init(jax.random.key(0), jnp.ones(3))


def test_a_parameter_name_with_a_slash_is_handled():
    compressed = smh_jax.compress(SlashName(), fraction=0.5)
    x = jnp.ones((2, 8))
    variables = compressed.init(jax.random.key(0), x)
    dense = compressed.materialize(variables["params"])
    assert list(dense) == ["a/b"]
    np.testing.assert_allclose(compressed.apply(variables, x),
                               SlashName().apply({"params": dense}, x), rtol=1e-5, atol=1e-6)


def test_numpy_and_jax_scalars_are_accepted_as_sizes():
    x = jnp.ones((2, 8))
    for size in ({"fraction": np.float32(0.5)}, {"fraction": jnp.float32(0.5)},
                 {"target_params": np.int64(100)}):
        layout = smh_jax.compress(TwoLayer(), **size).init(
            jax.random.key(0), x)["params"]["smh"].layout
        assert layout.requested in (("fraction", 0.5), ("target_params", 100.0))


class AutoEncoder(nn.Module):
    def setup(self):
        self.enc = nn.Dense(3)
        self.dec = nn.Dense(8)

    def encode(self, x):
        return self.enc(x)

    def __call__(self, x):
        z = self.encode(x)
        self.sow("intermediates", "code", z)
        return self.dec(z)


def test_apply_forwards_method_to_the_wrapped_model():
    compressed = smh_jax.compress(AutoEncoder(), fraction=0.5)
    x = jnp.ones((2, 8))
    variables = compressed.init(jax.random.key(0), x)
    dense = {"params": compressed.materialize(variables["params"])}
    want = AutoEncoder().apply(dense, x, method=AutoEncoder.encode)
    np.testing.assert_allclose(compressed.apply(variables, x, method=AutoEncoder.encode), want,
                               rtol=1e-6)
    np.testing.assert_allclose(compressed.apply(variables, x, method="encode"), want, rtol=1e-6)


def test_captured_intermediates_are_laid_out_as_the_wrapped_models():
    compressed = smh_jax.compress(AutoEncoder(), fraction=0.5)
    x = jnp.ones((2, 8))
    variables = compressed.init(jax.random.key(0), x)
    dense = {"params": compressed.materialize(variables["params"])}
    _, want = AutoEncoder().apply(dense, x, capture_intermediates=True)
    _, got = compressed.apply(variables, x, capture_intermediates=True)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
