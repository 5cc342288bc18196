"""The 'digits' source: scikit-learn's bundled 8x8 handwritten digits (1,797 images).

Needs no download, so the quickstart runs offline. Split 80/20 into 'train' (1,437)
and 'test' (360), stratified with a fixed seed: the split never depends on the run's
seed. Pixels (0..16) are scaled to 0..255.
"""

from __future__ import annotations

import numpy as np

from smh_jax.data import in_memory, splits
from smh_jax.data.base import DatasetInfo
from smh_jax.data.dataset_config import DataConfig

SPLIT_SEED = 0


def read_split(spec: str) -> in_memory.ArraySplit:
    """Split `spec` ('train', 'test', 'train[:90%]', ...) of the digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    n = len(digits.target)
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=0.2, stratify=digits.target, random_state=SPLIT_SEED)
    indices = {"train": np.sort(train_idx), "test": np.sort(test_idx)}
    base, rng = splits.resolve_split(spec, ["test", "train"], lambda b: len(indices[b]),
                                     "the digits dataset")
    idx = indices[base][rng.start:rng.stop]
    images = np.round(digits.images[idx] * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return in_memory.ArraySplit(digits.target[idx], (8, 8, 1), lambda: images, None)


def read_splits(cfg: DataConfig) -> tuple[in_memory.ArraySplit, in_memory.ArraySplit]:
    return read_split(cfg.train_split), read_split(cfg.eval_split)


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    return in_memory.dataset_info(cfg, *read_splits(cfg))


def data_source(cfg: DataConfig, prefetch: int = 2) -> in_memory.InMemorySource:
    return in_memory.InMemorySource(cfg, *read_splits(cfg), prefetch=prefetch)
