"""`config.dataset` validation, split slicing and the source registry (no data read)."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from smh_jax import data
from smh_jax.data import in_memory, registry, splits
from smh_jax.errors import UserError
from smh_jax.training import config_base


def dataset(**overrides):
    cfg = config_base.base_config().dataset
    cfg.update(overrides)
    return cfg


def test_base_config_dataset_parses_to_its_typed_view():
    cfg = data.parse_config(dataset(data_dir="/tfds"))
    assert cfg == data.DataConfig(
        name="cifar10", source="tfds", path=None, data_dir="/tfds", train_split="train",
        eval_split="test", image_size=32, augment="cifar", shuffle_buffer=16_384, cache=True)


@pytest.mark.parametrize("overrides,message", [
    ({"source": "webdataset"},
     r"config.dataset.source: 'webdataset' is not one of tfds, npz, folder, digits"),
    ({"augment": "autoaugment"},
     r"config.dataset.augment: 'autoaugment' is not one of cifar, inception, none"),
    ({"source": "npz"}, r"config.dataset.path is empty; source 'npz' reads its data"),
    ({"source": "folder"}, r"config.dataset.path is empty; source 'folder'"),
    ({"name": ""}, r"config.dataset.name: '' must be a non-empty string"),
    ({"image_size": 0}, r"config.dataset.image_size: 0 must be a positive int"),
    ({"shuffle_buffer": 0}, r"config.dataset.shuffle_buffer: 0 must be an int >= 1"),
    ({"eval_split": ""}, r"config.dataset.eval_split: '' must be a non-empty split name"),
])
def test_bad_dataset_fields_name_the_field_and_what_is_allowed(overrides, message):
    with pytest.raises(UserError, match=message):
        data.parse_config(dataset(**overrides))


def test_a_missing_dataset_field_is_named():
    fields = dataset().to_dict()
    del fields["cache"]
    with pytest.raises(UserError, match=r"config.dataset.cache is missing"):
        data.parse_config(fields)


def test_digits_needs_no_name():
    assert data.parse_config(dataset(source="digits", name="")).name == "digits"


@pytest.mark.parametrize("spec,n,expected", [
    ("train", 37, ("train", range(37))),
    ("train[:50%]", 37, ("train", range(18))),
    ("train[90%:]", 10, ("train", range(9, 10))),
    ("test[-5:]", 11, ("test", range(6, 11))),
    ("test[100:]", 11, ("test", range(11, 11))),
    ("train[2:-2]", 10, ("train", range(2, 8))),
])
def test_split_slices_resolve_to_index_ranges(spec, n, expected):
    assert splits.resolve_split(spec, ["test", "train"], lambda base: n, "here") == expected


@pytest.mark.parametrize("spec,message", [
    ("valid", r"split 'valid' is not in here; available splits: 'test', 'train'"),
    ("train[:", r"split 'train\[:' is not in here"),
    ("train[:150%]", r"split 'train\[:150%\]': percent 150% is outside -100%..100%"),
])
def test_bad_split_names_the_split_and_the_available_ones(spec, message):
    with pytest.raises(UserError, match=message):
        splits.resolve_split(spec, ["test", "train"], lambda base: 10, "here")


@pytest.mark.parametrize("name", sorted(registry.SOURCES))
def test_every_registered_source_implements_the_source_interface(name):
    if registry.SOURCES[name].requires:
        pytest.importorskip("tensorflow_datasets")
    module = registry.load(name)
    assert callable(module.dataset_info) and callable(module.data_source)


# A source defined here, to show what adding one takes: read two splits, one registry entry.
def read_splits(cfg):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 4, 4, 3), np.uint8)
    labels = np.arange(30) % 3
    train = in_memory.ArraySplit(labels[:20], (4, 4, 3), lambda: images[:20], None)
    evals = in_memory.ArraySplit(labels[20:], (4, 4, 3), lambda: images[20:], None)
    return train, evals


def dataset_info(cfg):
    return in_memory.dataset_info(cfg, *read_splits(cfg))


def data_source(cfg, prefetch=2):
    return in_memory.InMemorySource(cfg, *read_splits(cfg), prefetch=prefetch)


def test_one_registry_entry_makes_a_source_known_to_validation_and_the_api(monkeypatch):
    entry = registry.Source(module=__name__, default_name="random")
    monkeypatch.setattr(registry, "SOURCES",
                        types.MappingProxyType({**registry.SOURCES, "random": entry}))
    config = config_base.base_config()
    config.dataset.update(source="random", name="", image_size=4, augment="none")
    config_base.validate(config)
    info = data.get_info(config.dataset)
    assert (info.name, info.num_train, info.num_eval, info.num_classes) == ("random", 20, 10, 3)
    with data.create_source(config.dataset).train_iterator(seed=0, global_batch_size=5) as it:
        assert next(it)["image"].shape == (5, 4, 4, 3)


def test_data_config_fields_are_the_schema_dataset_fields():
    fields = {f.name for f in dataclasses.fields(data.DataConfig)}
    assert fields == set(config_base.base_config().dataset)
