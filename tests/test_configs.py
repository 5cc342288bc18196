"""Every experiment file in configs/ builds, validates and sizes its model (shapes only)."""

import glob
import os

import jax
import mock_tfds
import pytest
from config_helpers import load_config_file

from smh_jax import models
from smh_jax.training import config_base
from smh_jax.training import experiment as experiment_lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
WITH_ARGUMENTS = [p for p in CONFIGS if not p.endswith("quickstart.py")]


def config_path(name):
    return os.path.join(ROOT, "configs", f"{name}.py")


@pytest.fixture(scope="module")
def tfds_root(tmp_path_factory):
    return mock_tfds.write_metadata(str(tmp_path_factory.mktemp("tfds")))


def build(config, tfds_root):
    """The experiment and its parameter accounting; TFDS configs read the offline fakes."""
    if config.dataset.source == "tfds":  # the fake datasets hold a few dozen examples
        config.dataset.data_dir = tfds_root
        config.batch_size = 16
    with mock_tfds.mocked(tfds_root):
        experiment = experiment_lib.build_experiment(config)
        return experiment, experiment_lib.parameter_accounting(experiment)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p)[:-3])
def test_config_builds_validates_and_sizes_the_model(path, tfds_root):
    config = load_config_file(path)
    config_base.validate(config)
    experiment, accounting = build(config, tfds_root)
    abstract = experiment.abstract_state
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
    assert experiment.total_steps > 0
    if config_base.is_dense(config):
        assert accounting["trainable_params"] == accounting["dense_params"]
    elif config.smh.target_params:
        side = accounting["smh"]["n"]
        assert 0 <= accounting["trainable_params"] - config.smh.target_params < 2 * side
    else:
        smh = accounting["smh"]
        assert smh["factor_fraction"] == pytest.approx(config.smh.fraction, abs=2 * smh["n"] / (
            smh["hashed_weights"]))


def test_efficientnet_b4_smh_targets_dense_b0_size_at_b4_resolution(tfds_root):
    b4 = load_config_file(config_path("efficientnet_b4_smh"))
    _, b0 = build(load_config_file(config_path("efficientnet_b0_imagenet")), tfds_root)
    assert b4.model.name == "efficientnet_b4"
    assert b4.smh.target_params == b0["dense_params"]
    assert b4.dataset.image_size == models.default_resolution("efficientnet_b4")


@pytest.mark.parametrize("path", WITH_ARGUMENTS, ids=lambda p: os.path.basename(p)[:-3])
def test_runlocal_argument_shrinks_the_run_to_a_few_small_steps(path):
    config = load_config_file(path, "runlocal")
    config_base.validate(config)
    assert config.num_steps <= 10 and config.batch_size <= 16
    assert config.dataset.image_size <= 64 and config.model.dtype == "float32"


def test_cifar_fast_and_npz_arguments_switch_the_recipe_and_the_source():
    path = config_path("resnet32_cifar10_smh")
    fast = load_config_file(path, "fast,epochs=30,npz=/data/c.npz")
    config_base.validate(fast)
    assert fast.num_epochs == 30 and fast.batch_size == 512
    assert fast.schedule.name == "one_cycle" and fast.optimizer.learning_rate == 0.4
    assert fast.dataset.source == "npz" and fast.dataset.path == "/data/c.npz"
    with pytest.raises(config_base.UserError, match="config argument 'fsat' is unknown"):
        load_config_file(path, "fsat")
