"""What every dataset source provides: its metadata and its train/eval iterators.

Plain Python/NumPy, so the training loop imports it on machines without TensorFlow.
Each source module (see `registry.py`) returns a `DataSource`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from smh_jax.data import batching

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the training loop needs to know before it sees a batch.

    `image_shape` is what the host yields (after host-side preprocessing), so models
    and device-side augmentation can be built from it. `mean`/`std` are per-channel on
    the 0..255 scale, for `augment.normalize`.
    """

    name: str
    source: str
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_eval: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str


class TrainIterator(abc.ABC, Iterator[dict]):
    """Infinite iterator over local train batches that can report where it is."""

    @abc.abstractmethod
    def __next__(self) -> dict[str, np.ndarray]:
        """Returns {'image': uint8 (local, H, W, C), 'label': int32 (local,)}."""

    def __iter__(self) -> TrainIterator:
        return self

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-serializable position; `start_step=state['step']` resumes exactly."""

    def close(self) -> None:
        """Releases threads/readers; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DataSource(abc.ABC):
    """A configured dataset that builds train/eval iterators for one process."""

    @property
    @abc.abstractmethod
    def info(self) -> DatasetInfo:
        """Same object get_info() returns for this config."""

    @abc.abstractmethod
    def train_iterator(self, seed: int, global_batch_size: int, start_step: int = 0,
                       process_index: int = 0, process_count: int = 1) -> TrainIterator:
        """Infinite train batches; epoch e's order is a pure function of (seed, e)."""

    @abc.abstractmethod
    def eval_iterator(self, global_batch_size: int, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Each eval example exactly once over all processes; padding has mask 0."""

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Optimizer steps in one pass over the train split (remainder dropped)."""
        return batching.steps_per_epoch(self.info.num_train, global_batch_size, "train")

    def num_eval_batches(self, global_batch_size: int, process_count: int = 1) -> int:
        """How many batches eval_iterator yields on every process."""
        batching.check_batching(global_batch_size, 0, process_count)
        return batching.num_eval_batches(self.info.num_eval, global_batch_size, process_count)
