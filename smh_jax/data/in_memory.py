"""What the in-memory sources (npz, folder, digits) share: splits, metadata, iterators.

A source module only reads its two splits (`read_splits(cfg)` returning `ArraySplit`s);
everything else is here. The whole split lives in host memory as uint8 NHWC and batches
are gathered by index: epoch e's order is
`np.random.default_rng([seed, e]).permutation(num_train)`, global batch i is
perm[i*B:(i+1)*B], and process p yields its contiguous slice of it, so the global batch
does not depend on the number of processes.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from smh_jax.data import batching, decode, host_augment, pixel_stats
from smh_jax.data.base import DatasetInfo, DataSource
from smh_jax.data.dataset_config import DataConfig
from smh_jax.data.prefetch import PrefetchTrainIterator
from smh_jax.errors import UserError

_RNG_TAG_AUGMENT = 0x5A17  # Keeps host-augmentation streams apart from the epoch order.


class ArraySplit:
    """One (possibly sliced) split: labels are cheap, pixels are loaded by `images()`.

    `cache_key` identifies the pixels (file, mtime, slice, ...) so that get_info() and
    then create_source() decode a split once; None: not cached.
    """

    def __init__(self, labels: np.ndarray, image_shape: tuple[int, int, int],
                 load: Callable[[], np.ndarray], cache_key: tuple | None):
        self.labels = labels.astype(np.int32)
        self.image_shape = image_shape
        self._load = load
        self.cache_key = cache_key
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def images(self) -> np.ndarray:
        """Decoded pixels, kept by this split (and briefly in the module cache)."""
        if self._images is None:
            self._images = _cached(self.cache_key, self._load)
        return self._images


_CACHE: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2  # get_info() then create_source() decode a train split once, not twice.


def _cached(key: tuple | None, load: Callable[[], np.ndarray]) -> np.ndarray:
    if key is None:
        return load()
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    images = load()
    images.setflags(write=False)
    with _CACHE_LOCK:
        _CACHE[key] = images
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return images


def clear_cache() -> None:
    """Drops decoded splits kept for reuse between get_info() and create_source()."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _yielded_shape(cfg: DataConfig, stored: tuple[int, int, int],
                   where: str) -> tuple[int, int, int]:
    if cfg.augment == "inception":
        return (cfg.image_size, cfg.image_size, stored[2])
    if stored[:2] != (cfg.image_size, cfg.image_size):
        raise UserError(
            f"dataset.image_size={cfg.image_size} does not match the {stored[0]}x{stored[1]} "
            f"images of {where}; with augment={cfg.augment!r} the host yields raw images, so "
            f"set image_size={stored[0]} or use augment='inception' to resize"
        )
    return stored


def dataset_info(cfg: DataConfig, train: ArraySplit, evals: ArraySplit) -> DatasetInfo:
    """DatasetInfo from labels and shapes; decodes pixels only for unknown-dataset stats."""
    if len(train) == 0 or len(evals) == 0:
        empty = cfg.train_split if len(train) == 0 else cfg.eval_split
        raise UserError(f"split {empty!r} of dataset {cfg.name!r} is empty")
    if train.image_shape[2] != evals.image_shape[2]:
        raise UserError(
            f"train split has {train.image_shape[2]} channels but eval split has "
            f"{evals.image_shape[2]}; both must match"
        )
    where = cfg.path or cfg.name
    image_shape = _yielded_shape(cfg, train.image_shape, where)
    _yielded_shape(cfg, evals.image_shape, where)
    labels = np.concatenate([train.labels, evals.labels])
    if labels.min() < 0:
        raise UserError(f"dataset {where!r} has negative labels; expected 0..num_classes-1")
    stats = pixel_stats.known_stats(cfg.name, image_shape[2])
    mean, std = stats if stats is not None else pixel_stats.channel_stats(train.images())
    return DatasetInfo(
        name=cfg.name,
        source=cfg.source,
        num_classes=int(labels.max()) + 1,
        image_shape=tuple(int(d) for d in image_shape),
        num_train=len(train),
        num_eval=len(evals),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        augment=cfg.augment,
    )


class BatchMaker:
    """Builds local train batch `step` from in-memory arrays: a pure function of the step.

    Kept apart from the iterator so the prefetch thread does not keep the iterator
    alive: dropping the iterator stops the thread.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int,
                 global_batch_size: int, local: int, process_index: int, steps: int,
                 augment: str, image_size: int):
        self.images, self.labels = images, labels
        self.seed, self.global_batch_size, self.local = seed, global_batch_size, local
        self.process_index, self.steps = process_index, steps
        self.augment, self.image_size = augment, image_size
        self._epoch, self._perm = -1, None
        self._pool: ThreadPoolExecutor | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
            self._epoch = epoch
        return self._perm

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        epoch, i = divmod(step, self.steps)
        start = i * self.global_batch_size + self.process_index * self.local
        idx = self.permutation(epoch)[start:start + self.local]
        images = self.images[idx]
        if self.augment == "inception":
            images = self._inception(images, epoch, start)
        return {"image": images, "label": self.labels[idx]}

    def _inception(self, images: np.ndarray, epoch: int, start: int) -> np.ndarray:
        # Per-example stream keyed by the example's position in the epoch, so the
        # global batch is identical for any process count.
        def one(k: int) -> np.ndarray:
            rng = np.random.default_rng([self.seed, epoch, start + k, _RNG_TAG_AUGMENT])
            return host_augment.random_resized_crop(images[k], rng, self.image_size)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(decode.num_threads(), thread_name_prefix="smh_aug")
        return np.stack(list(self._pool.map(one, range(len(images)))))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


class InMemorySource(DataSource):
    """Two in-memory splits as a DataSource; pixels are loaded on first use."""

    def __init__(self, cfg: DataConfig, train: ArraySplit, evals: ArraySplit,
                 prefetch: int = 2):
        self._cfg = cfg
        self._train, self._eval = train, evals
        self._info = dataset_info(cfg, train, evals)
        self._prefetch = prefetch

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def train_iterator(self, seed: int, global_batch_size: int, start_step: int = 0,
                       process_index: int = 0, process_count: int = 1
                       ) -> PrefetchTrainIterator:
        seed = batching.check_seed(seed)
        start_step = batching.check_start_step(start_step)
        local = batching.check_batching(global_batch_size, process_index, process_count)
        steps = batching.steps_per_epoch(len(self._train), global_batch_size,
                                         self._cfg.train_split)
        make = BatchMaker(self._train.images(), self._train.labels, seed, global_batch_size,
                          local, process_index, steps, self._cfg.augment, self._cfg.image_size)

        def state(step: int) -> dict[str, Any]:
            return batching.iterator_state(step, steps, seed, global_batch_size,
                                           process_index, process_count)

        return PrefetchTrainIterator(make, start_step, state, self._prefetch)

    def eval_iterator(self, global_batch_size: int, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        local = batching.check_batching(global_batch_size, process_index, process_count)
        return self._eval_batches(global_batch_size, local, process_index)

    def _eval_batches(self, global_batch_size: int, local: int,
                      process_index: int) -> Iterator[dict[str, np.ndarray]]:
        # Global batch i is examples [i*B, (i+1)*B); process p takes its contiguous slice.
        images, labels = self._eval.images(), self._eval.labels
        n = len(labels)
        for i in range(math.ceil(n / global_batch_size)):
            lo = min(i * global_batch_size + process_index * local, n)
            hi = min(lo + local, n)
            batch = images[lo:hi]
            if self._cfg.augment == "inception" and hi > lo:
                size = self._cfg.image_size
                batch = np.stack([host_augment.center_crop(x, size) for x in batch])
            yield batching.pad_batch(batch, labels[lo:hi], local, self._info.image_shape)
