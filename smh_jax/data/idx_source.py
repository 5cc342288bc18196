"""The 'idx' source: MNIST-style IDX files (LeCun's format), plain or gzip-compressed.

`dataset.path` is a folder with the four standard files, each either raw or `.gz`:

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

Splits: 'train' (the training file minus a held-out validation set), 'validation' (10,000
training images, chosen by a fixed seed, so the split never depends on the run's
seed), 'test' (the t10k files) and 'train_full' (all training images); each can be sliced
('train[:1000]'). Every file is checked: magic number, dimensions against the data
length, image and label counts, labels in 0..9.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from smh_jax.data import in_memory, splits
from smh_jax.data.base import DatasetInfo
from smh_jax.data.dataset_config import DataConfig
from smh_jax.errors import UserError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
VALIDATION_SIZE = 10_000
VALIDATION_SEED = 0
NUM_CLASSES = 10
_UBYTE = 0x08


def find_file(folder: str, stem: str) -> str:
    """`folder/stem` or `folder/stem.gz`; UserError naming both when neither exists."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise UserError(f"dataset.path={folder!r}: neither {stem} nor {stem}.gz is there; an "
                    f"'idx' folder holds {', '.join(FILES.values())} (raw or .gz)")


def read_idx(path: str, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file with `ndim` dimensions (3 images, 1 labels)."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot be read ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path}: not an IDX file (magic {data[:4].hex() or 'empty'}; "
                        f"expected 0000{_UBYTE:02x}{ndim:02x})")
    if data[2] != _UBYTE or data[3] != ndim:
        raise UserError(f"{path}: IDX magic {data[:4].hex()} declares type 0x{data[2]:02x} "
                        f"with {data[3]} dimensions; expected unsigned bytes (0x08) with "
                        f"{ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    if len(data) - header != int(np.prod(shape)):
        raise UserError(f"{path}: dimensions {shape} need {int(np.prod(shape))} bytes of "
                        f"data; the file has {len(data) - header}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_pair(folder: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, H, W, 1), labels (N,)) of `prefix` 'train' or 'test', checked."""
    images_path = find_file(folder, FILES[f"{prefix}_images"])
    labels_path = find_file(folder, FILES[f"{prefix}_labels"])
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise UserError(f"{images_path} holds {len(images)} images but {labels_path} "
                        f"{len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise UserError(f"{labels_path}: label {int(labels.max())} is outside 0..9")
    return images[..., None], labels


def split_indices(num_train: int) -> dict[str, np.ndarray]:
    """Indices into the training file of 'train', 'validation' and 'train_full'."""
    if num_train <= VALIDATION_SIZE:
        raise UserError(f"the training file holds {num_train} images; holding out the "
                        f"{VALIDATION_SIZE}-image validation split needs more")
    held_out = np.random.default_rng(VALIDATION_SEED).permutation(num_train)[:VALIDATION_SIZE]
    mask = np.ones(num_train, bool)
    mask[held_out] = False
    return {"train": np.flatnonzero(mask), "validation": np.sort(held_out),
            "train_full": np.arange(num_train)}


SPLITS = ("train", "validation", "test", "train_full")


def read_split(folder: str, spec: str) -> in_memory.ArraySplit:
    """Split `spec` ('train', 'validation', 'test', 'train_full', sliced) of `folder`."""
    if not os.path.isdir(folder):
        raise UserError(f"dataset.path={folder!r}: no such directory")
    parsed = splits.parse_split(spec)
    if parsed is None or parsed[0] not in SPLITS:
        splits.resolve_split(spec, SPLITS, lambda b: 0, folder)  # raises, naming the splits
    prefix = "test" if parsed[0] == "test" else "train"
    images, labels = read_pair(folder, prefix)
    index = {"test": np.arange(len(labels))} if prefix == "test" else split_indices(len(labels))
    base, rng = splits.resolve_split(spec, SPLITS, lambda b: len(index[b]), folder)
    chosen = index[base][rng.start:rng.stop]
    stamp = os.stat(find_file(folder, FILES[f"{prefix}_images"])).st_mtime_ns
    return in_memory.ArraySplit(
        labels[chosen], images.shape[1:], lambda: np.ascontiguousarray(images[chosen]),
        ("idx", os.path.abspath(folder), base, rng.start, rng.stop, stamp))


def read_splits(cfg: DataConfig) -> tuple[in_memory.ArraySplit, in_memory.ArraySplit]:
    return read_split(cfg.path, cfg.train_split), read_split(cfg.path, cfg.eval_split)


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    return in_memory.dataset_info(cfg, *read_splits(cfg))


def data_source(cfg: DataConfig, prefetch: int = 2) -> in_memory.InMemorySource:
    return in_memory.InMemorySource(cfg, *read_splits(cfg), prefetch=prefetch)
