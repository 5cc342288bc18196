"""Every experiment file in configs/ builds, validates and sizes its model (shapes only)."""

import glob
import os

import jax
import mock_tfds
import pytest
from config_helpers import load_config_file

from smh_jax.training import config_base
from smh_jax.training import experiment as experiment_lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
REQUIRED = {"resnet32_cifar10_smh", "resnet32_cifar10", "resnet20_cifar10", "resnet20_cifar10_smh",
            "resnet56_cifar10", "resnet56_cifar10_smh", "resnet50_imagenet_smh",
            "efficientnet_b0_imagenet", "efficientnet_b4_smh", "mobilenet_v2_imagenet_smh",
            "mobilenet_v3_large_imagenet_smh", "quickstart"}


load = load_config_file


@pytest.fixture(scope="module")
def tfds_root(tmp_path_factory):
    return mock_tfds.write_metadata(str(tmp_path_factory.mktemp("tfds")))


def test_the_required_experiments_exist_and_say_how_to_run_them():
    names = {os.path.basename(p)[:-3] for p in CONFIGS}
    assert REQUIRED <= names
    for path in CONFIGS:
        with open(path) as f:
            text = f.read()
        doc = text.split('"""')[1]
        assert "python train.py --config=configs/" in doc, path
        assert "Expected result" in doc and "runtime" in doc, path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p)[:-3])
def test_config_builds_validates_and_sizes_the_model(path, tfds_root):
    config = load(path)
    config_base.validate(config)
    if config.dataset.source == "tfds":  # the fake datasets hold a few dozen examples
        config.dataset.data_dir = tfds_root
        config.batch_size = 16
    with mock_tfds.mocked(tfds_root):
        experiment = experiment_lib.build_experiment(config)
        accounting = experiment_lib.parameter_accounting(experiment)
    abstract = experiment.abstract_state
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
    assert experiment.total_steps > 0
    name = os.path.basename(path)[:-3]
    if config_base.is_dense(config):
        assert accounting["trainable_params"] == accounting["dense_params"]
    elif config.smh.target_params:
        side = accounting["smh"]["n"]
        assert 0 <= accounting["trainable_params"] - config.smh.target_params < 2 * side, name
    else:
        smh = accounting["smh"]
        assert smh["factor_fraction"] == pytest.approx(config.smh.fraction, abs=2 * smh["n"] / (
            smh["hashed_weights"]))


def test_headline_config_is_b4_at_b0_size(tfds_root):
    config = load(os.path.join(ROOT, "configs", "efficientnet_b4_smh.py"))
    assert config.model.name == "efficientnet_b4" and config.smh.target_params == 5_288_548
    assert config.dataset.image_size == 380


@pytest.mark.parametrize("name", ["resnet32_cifar10_smh", "efficientnet_b4_smh"])
def test_runlocal_variant_shrinks_the_run(name):
    config = load(os.path.join(ROOT, "configs", f"{name}.py"), "runlocal")
    config_base.validate(config)
    assert config.num_steps <= 10 and config.batch_size <= 16


def test_cifar_arguments():
    fast = load(os.path.join(ROOT, "configs", "resnet32_cifar10_smh.py"),
                "fast,epochs=30,npz=/data/c.npz")
    assert fast.num_epochs == 30 and fast.dataset.source == "npz"
    assert fast.dataset.path == "/data/c.npz" and fast.batch_size == 512
    with pytest.raises(config_base.UserError, match="config argument 'fsat' is unknown"):
        load(os.path.join(ROOT, "configs", "resnet32_cifar10_smh.py"), "fsat")
