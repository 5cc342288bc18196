"""The training loop on real (small) data: real steps, checkpoints, resume, eval, export.

Runs in-process on the 8 simulated CPU devices that conftest.py sets up, like Flax's
examples/imagenet train_test.py: real train and eval steps on fake (mock TFDS) data and
on scikit-learn's digits.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import mock_tfds
import numpy as np
import pytest
from config_helpers import RESNET8, tiny_config

import smh_jax
from smh_jax.core.tree_paths import jax_path_str
from smh_jax.errors import UserError
from smh_jax.formats import dense_export as export
from smh_jax.training import config_base, steps, trainer
from smh_jax.training import experiment as experiment_lib

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def digits_config(**overrides):
    """The tests' tiny run (config_helpers.TINY) for 6 steps at a constant learning rate,
    with checkpoints at steps 3 and 6."""
    return tiny_config(**{"num_steps": 6, "log_every_steps": 2, "checkpoint_every_steps": 3,
                          "schedule.name": "constant", "schedule.warmup_epochs": 0.0,
                          "optimizer.learning_rate": 0.05, **overrides})


@pytest.fixture(scope="module")
def tfds_root(tmp_path_factory):
    return mock_tfds.write_metadata(str(tmp_path_factory.mktemp("tfds")))


def cifar_config(root):
    c = config_base.base_config()
    c.model.name = "resnet8"
    c.model.width_multiplier = 0.5
    c.dataset.data_dir = root
    c.dataset.shuffle_buffer = 64
    c.smh.fraction = 0.25
    c.batch_size = 16
    c.num_steps = 3
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
    return c


def restored_params(config, workdir, step=None):
    _, state, restored_step = trainer.restore_for_eval(config, workdir, step)
    return jax.device_get(state.params), restored_step


def test_mock_tfds_cifar10_on_8_devices(tfds_root, tmp_path):
    assert jax.device_count() == 8
    with mock_tfds.mocked(tfds_root):
        summary = trainer.train_and_evaluate(cifar_config(tfds_root), str(tmp_path))
    assert summary["steps"] == 3 and summary["eval_examples"] == 50
    assert summary["method"] == "smh" and summary["fraction"] == 0.25
    assert 0.0 <= summary["accuracy"] <= 1.0
    # SMH is compared to the model it wraps (ResNet-8 at width 0.5: 19,218).
    assert summary["dense_params"] == 19_218
    assert summary["trainable_params"] < summary["dense_params"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]
    for name in ("summary.json", "config.json", "metrics.jsonl"):
        assert (tmp_path / name).exists()
    assert any(n.startswith("events") for n in os.listdir(tmp_path / "tensorboard"))


def test_dense_run_at_a_narrower_width_is_the_width_baseline(tmp_path):
    """fraction 0 trains the plain model; at width < 1 it is the paper's width-multiplier
    baseline, compared to the full-width model (64-32-10 MLP: 2,410; width 0.5: 1,210)."""
    summary = trainer.train_and_evaluate(
        digits_config(**{"smh.fraction": 0.0, "model.width_multiplier": 0.5}), str(tmp_path))
    assert summary["method"] == "width" and summary["fraction"] is None
    assert summary["dense_params"] == 2_410 and summary["trainable_params"] == 1_210


def test_state_sharding_follows_the_rules():
    # side=72 (>= ceil(sqrt(N)) = 50) makes the virtual matrix's columns split 8 ways.
    experiment = experiment_lib.build_experiment(digits_config(**{"smh.side": 72}, sharding_rules=(
        ("smh/pool/b$", (None, "data")),)))
    sharded = {jax_path_str(p): s.spec for p, s in
               jax.tree_util.tree_flatten_with_path(experiment.state_shardings)[0]}
    assert sharded["params/smh/pool/b"] == jax.sharding.PartitionSpec(None, "data")
    assert sharded["params/smh/pool/a"] == jax.sharding.PartitionSpec()
    assert any(k.endswith("pool/b") and v == jax.sharding.PartitionSpec(None, "data")
               for k, v in sharded.items() if k.startswith("opt_state"))


def test_sharding_rule_that_cannot_split_is_refused():
    with pytest.raises(UserError, match="cannot be split 8 ways"):
        # n = ceil(sqrt(N)) = 50 rows of A do not split over 8 devices.
        experiment_lib.build_experiment(
            digits_config(sharding_rules=(("smh/pool/a$", ("data", None)),)))


def test_resume_continues_at_the_right_step_with_the_same_result(tmp_path):
    config = digits_config()
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    trainer.train_and_evaluate(config, straight)
    trainer.train_and_evaluate(config, resumed)
    # Emulate a crash right after the step-3 checkpoint: drop what came later.
    shutil.rmtree(os.path.join(resumed, "checkpoints", "6"))
    os.remove(os.path.join(resumed, "summary.json"))
    summary = trainer.train_and_evaluate(config, resumed)
    assert summary["steps"] == 6
    a, _ = restored_params(config, straight)
    b, step = restored_params(config, resumed)
    assert step == 6
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise: same data order, keys and updates
    with open(os.path.join(resumed, "metrics.jsonl")) as f:
        steps = [int(line.split('"step": ')[1].split(",")[0]) for line in f]
    assert 4 in steps and 6 in steps


def test_ema_weights_are_evaluated(tmp_path):
    summary = trainer.train_and_evaluate(digits_config(ema_decay=0.9), str(tmp_path))
    assert summary["ema"] is True
    experiment, state, _ = trainer.restore_for_eval(digits_config(ema_decay=0.9), str(tmp_path))
    ema, raw = state.ema_params["smh"].pool["a"], state.params["smh"].pool["a"]
    assert not np.allclose(ema, raw)


def test_export_dense_round_trip_gives_identical_logits(tmp_path):
    config = digits_config(**RESNET8)  # convolutions and trained BatchNorm statistics
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
    experiment, state, _ = trainer.restore_for_eval(config, str(tmp_path / "run"))
    variables = jax.device_get(state.eval_variables(False))
    dense = export.dense_variables(variables, compressed=True)
    export.export_dense(str(tmp_path / "dense"), dense, experiment.spec)
    module, loaded = export.load_dense(str(tmp_path / "dense"), (1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
    np.testing.assert_array_equal(
        module.apply(loaded, x, train=False),
        module.apply(dense, x, train=False))
    np.testing.assert_allclose(module.apply(loaded, x, train=False),
                               experiment.module.apply(variables, x, train=False),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="already holds an export"):
        export.export_dense(str(tmp_path / "dense"), dense, experiment.spec)


def test_weight_decay_on_materialized_weights(tmp_path):
    """weight_decay_on='weights' adds 0.5 wd ||W||^2 of the dense kernels to the loss."""
    config = digits_config(**{"smh.weight_decay_on": "weights", "optimizer.weight_decay": 0.1})
    experiment = experiment_lib.build_experiment(config)
    params = jax.jit(lambda r: experiment_lib.init_variables(
        experiment.module, (1, 8, 8, 1), r)["params"])(jax.random.key(0))
    dense = smh_jax.materialize(params["smh"])
    expected = sum(float(jnp.sum(w ** 2)) for w in jax.tree.leaves(dense) if w.ndim > 1)
    assert steps.weights_l2(params, "") == pytest.approx(expected, rel=1e-5)
    summary = trainer.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(summary["eval_loss"])
