"""Resident training: several runs in one program (a scanned epoch, or unrolled calls),
data kept on the device."""

import dataclasses
import math
import os
import subprocess
import sys

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from config_helpers import ROOT, xla_flags

import smh_jax
from smh_jax import models
from smh_jax.errors import UserError
from smh_jax.experiments import resident_dispatch
from smh_jax.training import resident


def _data(n=240, seed=0, signal=3.0):
    """A learnable task on 28x28 inputs: the class is the brightest of ten pixel blocks."""
    rng = np.random.default_rng(seed)

    def split(count):
        images = rng.normal(size=(count, 28, 28, 1)).astype(np.float32)
        labels = rng.integers(0, 10, count)
        for i, label in enumerate(labels):
            images[i, 2 * label:2 * label + 2, :, 0] += signal
        return resident.Split(jnp.asarray(images), jnp.asarray(labels, jnp.int32))

    return resident.ResidentData(split(n), split(100), split(100), num_classes=10)


MODEL = models.create("mlp", num_classes=10, hidden_sizes=(32,), dropout_rate=0.1)
RECIPE = resident.Recipe(epochs=2, batch_size=20)


def test_runs_learn_and_report_per_epoch_errors():
    (run,) = resident.train_runs(MODEL, _data(), RECIPE, [0.1], [0])
    assert len(run.validation_error) == len(run.test_error) == 2
    assert run.validation_error[-1] < 50.0  # chance is 90%
    assert run.best_epoch == int(np.argmin(run.validation_error)) + 1
    assert run.test_error_at_best == run.test_error[run.best_epoch - 1]
    assert run.trainable_params == 28 * 28 * 32 + 32 + 33 * 10


def test_runs_together_equal_runs_alone_and_a_seed_fixes_init_and_data_order():
    data = _data()
    together = resident.train_runs(MODEL, data, RECIPE, [0.1, 0.03, 0.1], [0, 1, 0])
    (alone,) = resident.train_runs(MODEL, data, RECIPE, [0.03], [1])
    np.testing.assert_allclose(together[1].train_loss, alone.train_loss, rtol=1e-4)
    assert together[1].validation_error == alone.validation_error
    assert together[0].train_loss == together[2].train_loss  # same seed, same rate
    assert together[0].train_loss != together[1].train_loss


class ConvBatchNorm(nn.Module):
    """Convolutions and batch statistics: what the unrolled calls exist for."""

    @nn.compact
    def __call__(self, x, *, train):
        # Far from BatchNorm's initial statistics (mean 0, variance 1), so evaluation
        # depends on the running averages the training steps carried.
        x = nn.Conv(4, (3, 3), strides=(2, 2))(10.0 * x + 5.0)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.5)(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


# Calls of 2, 2 and 1 steps (the epoch has 5): whole calls and a shorter last one. Each
# call unrolls its steps for every run, so short calls keep the compiles small.
CHUNKED_RECIPE = resident.Recipe(epochs=2, batch_size=48)


@pytest.mark.parametrize("model", [
    MODEL,  # dropout: each step's key
    ConvBatchNorm(),  # batch statistics carried from call to call
], ids=["mlp", "conv_batchnorm"])
def test_an_epoch_in_unrolled_calls_trains_as_the_scanned_epoch(model):
    data = _data(signal=0.3)  # a hard task: errors depend on every detail of the model
    scanned = resident.train_runs(model, data, CHUNKED_RECIPE, [0.1, 0.03], [0, 1])
    chunked = resident.train_runs(model, data, CHUNKED_RECIPE, [0.1, 0.03], [0, 1],
                                  steps_per_call=2)
    for a, b in zip(scanned, chunked, strict=True):
        np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-5)
        # Evaluation (batch statistics included) sees the same model: at most one of the
        # 100 examples may flip with rounding.
        np.testing.assert_allclose(a.validation_error, b.validation_error, atol=1.0)
        np.testing.assert_allclose(a.test_error, b.test_error, atol=1.0)


def test_the_recipes_weight_decay_changes_training():
    data = _data()
    (plain,) = resident.train_runs(MODEL, data, RECIPE, [0.1], [0])
    (decayed,) = resident.train_runs(MODEL, data, dataclasses.replace(RECIPE, weight_decay=0.5),
                                     [0.1], [0])
    # Same seed and rate: only the L2 term differs, and it must reach the updates.
    assert plain.train_loss[0] != decayed.train_loss[0]
    assert decayed.train_loss[-1] > plain.train_loss[-1]


def test_per_run_weight_decays_equal_each_decay_trained_alone():
    data = _data()
    together = resident.train_runs(MODEL, data, RECIPE, [0.1, 0.1], [0, 0],
                                   weight_decays=[0.0, 0.5])
    (alone,) = resident.train_runs(MODEL, data, dataclasses.replace(RECIPE, weight_decay=0.5),
                                   [0.1], [0])
    (plain,) = resident.train_runs(MODEL, data, RECIPE, [0.1], [0])
    assert [r.weight_decay for r in together] == [0.0, 0.5] and alone.weight_decay == 0.5
    np.testing.assert_allclose(together[1].train_loss, alone.train_loss, rtol=1e-4)
    np.testing.assert_allclose(together[0].train_loss, plain.train_loss, rtol=1e-4)
    assert together[0].train_loss != together[1].train_loss


def test_compressed_models_train_resident():
    compressed = smh_jax.compress(MODEL, fraction=0.25)
    (run,) = resident.train_runs(compressed, _data(), RECIPE, [1.0], [0])
    assert run.finite and run.validation_error[-1] < 60.0
    assert run.trainable_params < 0.3 * (28 * 28 * 32 + 32 + 33 * 10)


def test_a_diverging_run_is_reported_not_raised():
    (run,) = resident.train_runs(MODEL, _data(), RECIPE, [1e6], [0])
    assert not run.finite and np.isnan(run.validation_error).all()
    assert run.best_epoch == 2  # no finite epoch: the last


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="2 learning rates for 1 seeds"):
        resident.train_runs(MODEL, _data(), RECIPE, [0.1, 0.2], [0])
    with pytest.raises(UserError, match="batch_size=1000 exceeds the 240"):
        resident.train_runs(MODEL, _data(), resident.Recipe(epochs=1, batch_size=1000),
                            [0.1], [0])
    with pytest.raises(UserError, match=r"weight_decays \[0.1\] must be one finite number "
                       r">= 0 per run \(2 runs\)"):
        resident.train_runs(MODEL, _data(), RECIPE, [0.1, 0.2], [0, 1], weight_decays=[0.1])
    with pytest.raises(UserError, match=r"weight_decays \[-0.1\] must be one finite number"):
        resident.train_runs(MODEL, _data(), RECIPE, [0.1], [0], weight_decays=[-0.1])
    with pytest.raises(UserError, match="steps_per_call=-1 must be >= 0"):
        resident.train_runs(MODEL, _data(), RECIPE, [0.1], [0], steps_per_call=-1)
    with pytest.raises(UserError, match="momentum"):
        resident.Recipe(epochs=1, momentum=1.0)
    for decay in (-1e-4, float("nan")):
        with pytest.raises(UserError, match=f"recipe.weight_decay: {decay} must be finite"):
            resident.Recipe(epochs=1, weight_decay=decay)
    with pytest.raises(UserError, match="eval_examples=0 "):
        resident_dispatch.measure("mlp3", runs=1, settings=[0], examples=100, eval_examples=0)
    with pytest.raises(UserError, match=r"variants=\[\] \(not empty\)"):
        resident_dispatch.measure("mlp3", runs=1, settings=[0], examples=100, variants=[])


def test_dispatch_variants_parse_from_key_value_pairs_and_bad_ones_are_named():
    parse = resident_dispatch.parse_variant
    assert parse("--model", "max_pool=window") == {"max_pool": "window"}
    assert parse("--model", "hidden_sizes=(30, 20),dropout_rate=0.1") == {
        "hidden_sizes": (30, 20), "dropout_rate": 0.1}
    for bad in ("window", "=window", ""):
        with pytest.raises(UserError, match=f"--model={bad}: give key=value pairs"):
            parse(f"--model={bad}", bad)


def test_the_dispatch_benchmark_measures_every_model_variant_with_every_setting():
    rows = resident_dispatch.measure("mlp3", runs=1, settings=[0], examples=100,
                                     batch_size=50, repetitions=1, eval_examples=10,
                                     variants=({}, {"hidden_sizes": (20,)}))
    assert [(r["model"], r["steps_per_call"]) for r in rows] == [
        ({}, 0), ({"hidden_sizes": (20,)}, 0)]
    losses = [r["final_loss"] for r in rows]
    assert all(math.isfinite(x) for x in losses) and losses[0] != losses[1]  # two models


def test_the_dispatch_benchmark_compares_settings_that_train_alike():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": xla_flags(1)}
    script = os.path.join(ROOT, "scripts", "resident_dispatch.py")
    common = [sys.executable, script, "--net=mlp3", "--runs=2", "--examples=150",
              "--batch_size=50", "--eval_examples=120", "--repetitions=1"]
    good, bad = [subprocess.Popen([*common, extra], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for extra in ("--steps_per_call=0,1", "--steps_per_call=0,x")]
    out, err = good.communicate(timeout=300)
    assert good.returncode == 0, err[-2000:]
    rows = [line.split("|") for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0].split()[0] for r in rows] == ["0", "1"]
    assert float(rows[0][-1]) == pytest.approx(float(rows[1][-1]), rel=1e-4)  # final losses
    _, err = bad.communicate(timeout=300)
    assert bad.returncode == 2 and err.strip().splitlines()[-1].startswith(
        "error: --steps_per_call=0,x: give distinct integers >= 0")


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_the_schedule_warms_up_then_decays_by_a_cosine_to_its_final_fraction(warmup_epochs):
    schedule = resident.Recipe(epochs=4, warmup_epochs=warmup_epochs,
                               final_lr_fraction=0.1).schedule(10)
    warmup = int(10 * warmup_epochs)
    assert float(schedule(warmup)) == pytest.approx(1.0)
    assert float(schedule((warmup + 40) // 2)) == pytest.approx(0.55, abs=1e-6)
    assert float(schedule(40)) == pytest.approx(0.1)
    if warmup:
        assert float(schedule(0)) == 0.0 and float(schedule(warmup // 2)) == pytest.approx(0.5)
