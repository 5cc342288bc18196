"""The 'idx' source: MNIST's IDX files, their checks, and the held-out validation split."""

import gzip
import os
import struct

import numpy as np
import pytest

from smh_jax import data
from smh_jax.data import idx_source
from smh_jax.errors import UserError
from smh_jax.training import config_base


def write_idx(path: str, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path + (".gz" if compress else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_mnist(folder, num_train=10_100, num_test=50, compress=True, seed=0) -> dict:
    """Tiny IDX files in MNIST's layout (10,100 training images: the validation split
    holds out 10,000)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (num_train, 28, 28), np.uint8),
        "train_labels": rng.integers(0, 10, num_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (num_test, 28, 28), np.uint8),
        "test_labels": rng.integers(0, 10, num_test).astype(np.uint8),
    }
    os.makedirs(folder, exist_ok=True)
    for key, array in arrays.items():
        write_idx(os.path.join(folder, idx_source.FILES[key]), array, compress)
    return arrays


def _dataset(path, train="train", evaluation="test"):
    c = config_base.base_config().dataset
    c.source, c.path, c.name, c.image_size, c.augment = "idx", str(path), "", 28, "none"
    c.train_split, c.eval_split = train, evaluation
    return c


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    return folder, make_mnist(str(folder))


def test_splits_hold_out_a_fixed_validation_set_from_train(mnist):
    folder, arrays = mnist
    info = data.get_info(_dataset(folder, "train", "validation"))
    assert (info.name, info.num_train, info.num_eval, info.image_shape) == (
        "mnist", 100, 10_000, (28, 28, 1))
    train = idx_source.read_split(str(folder), "train")
    validation = idx_source.read_split(str(folder), "validation")
    again = idx_source.read_split(str(folder), "validation")
    np.testing.assert_array_equal(validation.images(), again.images())  # fixed, not per run
    seen = {bytes(x) for x in train.images()} | {bytes(x) for x in validation.images()}
    assert len(seen) == 10_100  # disjoint, together the whole training file
    full = idx_source.read_split(str(folder), "train_full")
    np.testing.assert_array_equal(full.images()[..., 0], arrays["train_images"])
    test = idx_source.read_split(str(folder), "test[:20]")
    np.testing.assert_array_equal(test.labels, arrays["test_labels"][:20])


def test_raw_and_gzip_files_read_the_same(tmp_path):
    make_mnist(str(tmp_path / "gz"), num_test=7, compress=True, seed=3)
    make_mnist(str(tmp_path / "raw"), num_test=7, compress=False, seed=3)
    for split in ("test", "validation[:5]"):
        a = idx_source.read_split(str(tmp_path / "gz"), split)
        b = idx_source.read_split(str(tmp_path / "raw"), split)
        np.testing.assert_array_equal(a.images(), b.images())


@pytest.mark.parametrize("damage,message", [
    (lambda f: os.remove(f"{f}/t10k-labels-idx1-ubyte.gz"),
     "neither t10k-labels-idx1-ubyte nor t10k-labels-idx1-ubyte.gz"),
    (lambda f: write_idx(f"{f}/t10k-labels-idx1-ubyte", np.zeros((5, 2), np.uint8)),
     "declares type 0x08 with 2 dimensions; expected unsigned bytes .0x08. with 1"),
    (lambda f: open(f"{f}/t10k-images-idx3-ubyte", "wb").write(b"\x08\x03\x00\x00" * 5),
     "not an IDX file"),
    (lambda f: open(f"{f}/t10k-images-idx3-ubyte", "wb").write(
        struct.pack(">BBBB3I", 0, 0, 8, 3, 50, 28, 28) + b"\x00" * 100),
     r"dimensions \(50, 28, 28\) need 39200 bytes of data; the file has 100"),
    (lambda f: write_idx(f"{f}/t10k-labels-idx1-ubyte", np.zeros(49, np.uint8)),
     "holds 50 images but .* 49 labels"),
    (lambda f: write_idx(f"{f}/t10k-labels-idx1-ubyte", np.full(50, 10, np.uint8)),
     "label 10 is outside 0..9"),
])
def test_damaged_files_are_one_line_errors(tmp_path, damage, message):
    make_mnist(str(tmp_path), num_train=10_001, compress=True)
    damage(str(tmp_path))  # a raw file written next to the .gz one is read first
    with pytest.raises(UserError, match=message):
        idx_source.read_split(str(tmp_path), "test")


def test_a_missing_folder_and_a_too_small_train_file_are_errors(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        idx_source.read_split(str(tmp_path / "nowhere"), "train")
    make_mnist(str(tmp_path), num_train=500)
    with pytest.raises(UserError, match="holds 500 images; holding out the 10000-image"):
        idx_source.read_split(str(tmp_path), "train")
    with pytest.raises(UserError, match="available splits: 'train', 'validation', 'test'"):
        idx_source.read_split(str(tmp_path), "dev")
