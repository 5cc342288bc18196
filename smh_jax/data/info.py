"""Dataset metadata, config parsing and the iterator interface shared by all sources.

Everything here is plain Python/NumPy so the training loop can import it on machines
without TensorFlow. The per-source modules implement `DataSource`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from smh_jax.errors import UserError

if TYPE_CHECKING:
    from typing_extensions import Self

SOURCES = ("tfds", "npz", "folder", "digits")
AUGMENTS = ("cifar", "inception", "none")

# Per-channel pixel statistics on the 0..255 scale. Known datasets use the published
# constants so that get_info() never has to read pixels for them.
_CIFAR10_STATS = ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
_CIFAR100_STATS = ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4))
_IMAGENET_STATS = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": _CIFAR10_STATS,
    "cifar10_1": _CIFAR10_STATS,
    "cifar10_corrupted": _CIFAR10_STATS,
    "cifar100": _CIFAR100_STATS,
    "imagenet2012": _IMAGENET_STATS,
    "imagenet2012_subset": _IMAGENET_STATS,
    "imagenet2012_real": _IMAGENET_STATS,
    "imagenet_v2": _IMAGENET_STATS,
}


def known_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Published mean/std for `name` ("cifar10", "imagenet2012/..:5.1.0"), else None."""
    base = name.split(":")[0].split("/")[0].strip().lower()
    return KNOWN_STATS.get(base)


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


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Validated, typed view of `config.dataset` (an ml_collections.ConfigDict)."""

    name: str
    source: str
    path: str | None
    data_dir: str | None
    train_split: str
    eval_split: str
    image_size: int
    augment: str
    shuffle_buffer: int
    cache: bool


def _get(config: Any, key: str, default: Any) -> Any:
    """Reads `key` from a ConfigDict/dict/object, tolerating missing optional keys."""
    if isinstance(config, dict):
        return config.get(key, default)
    try:
        return config[key]
    except (KeyError, TypeError, AttributeError):
        return getattr(config, key, default)


def parse_config(config: Any) -> DataConfig:
    """Checks `config.dataset` once so every later error is about data, not typos."""
    if isinstance(config, DataConfig):
        return config
    source = _get(config, "source", "tfds")
    if source not in SOURCES:
        raise UserError(
            f"dataset.source={source!r} is not supported; use one of {', '.join(SOURCES)}"
        )
    name = _get(config, "name", None)
    if source == "digits" and not name:
        name = "digits"
    if not isinstance(name, str) or not name:
        raise UserError(f"dataset.name={name!r} must be a non-empty string")
    augment = _get(config, "augment", "none")
    if augment not in AUGMENTS:
        raise UserError(
            f"dataset.augment={augment!r} is not supported; use one of {', '.join(AUGMENTS)}"
        )
    image_size = _get(config, "image_size", None)
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) \
            or image_size <= 0:
        raise UserError(f"dataset.image_size={image_size!r} must be a positive int")
    path = _get(config, "path", None)
    if source in ("npz", "folder") and not path:
        raise UserError(f"dataset.path={path!r}: source={source!r} needs a path")
    shuffle_buffer = _get(config, "shuffle_buffer", 10_000)
    if not isinstance(shuffle_buffer, (int, np.integer)) or shuffle_buffer < 1:
        raise UserError(f"dataset.shuffle_buffer={shuffle_buffer!r} must be an int >= 1")
    train_split = _get(config, "train_split", "train")
    eval_split = _get(config, "eval_split", "test")
    for key, value in (("train_split", train_split), ("eval_split", eval_split)):
        if not isinstance(value, str) or not value:
            raise UserError(f"dataset.{key}={value!r} must be a non-empty split name")
    return DataConfig(
        name=name,
        source=source,
        path=str(path) if path else None,
        data_dir=_get(config, "data_dir", None) or None,
        train_split=train_split,
        eval_split=eval_split,
        image_size=int(image_size),
        augment=augment,
        shuffle_buffer=int(shuffle_buffer),
        cache=bool(_get(config, "cache", False)),
    )


_SPLIT_RE = re.compile(r"^(?P<name>[\w\-]+)(?:\[(?P<lo>-?\d+%?)?:(?P<hi>-?\d+%?)?\])?$")


def parse_split(spec: str) -> tuple[str, str | None, str | None] | None:
    """Splits 'train[10%:90%]' into ('train', '10%', '90%'); None when the syntax is bad."""
    match = _SPLIT_RE.match(spec.strip())
    if match is None:
        return None
    return match.group("name"), match.group("lo"), match.group("hi")


def split_range(spec: str, lo: str | None, hi: str | None, n: int) -> range:
    """Index range of a sliced split, rounding percents like TFDS ('closest')."""

    def bound(text: str | None, default: int) -> int:
        if text is None:
            return default
        if text.endswith("%"):
            pct = int(text[:-1])
            if not -100 <= pct <= 100:
                raise UserError(f"split {spec!r}: percent {text} is outside -100%..100%")
            value = round(pct * n / 100.0)
        else:
            value = int(text)
        if value < 0:
            value += n
        return min(max(value, 0), n)

    return range(bound(lo, 0), bound(hi, n))


def check_batching(global_batch_size: int, process_index: int, process_count: int) -> int:
    """Validates the multi-process batch layout and returns the local batch size."""
    for key, value in (("global_batch_size", global_batch_size),
                       ("process_count", process_count), ("process_index", process_index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise UserError(f"{key}={value!r} must be an int")
    if process_count < 1:
        raise UserError(f"process_count={process_count} must be >= 1")
    if not 0 <= process_index < process_count:
        raise UserError(
            f"process_index={process_index} must be in [0, process_count={process_count})"
        )
    if global_batch_size < 1:
        raise UserError(f"global_batch_size={global_batch_size} must be >= 1")
    if global_batch_size % process_count:
        raise UserError(
            f"global_batch_size={global_batch_size} is not divisible by "
            f"process_count={process_count}; use a multiple of {process_count}"
        )
    return int(global_batch_size // process_count)


def steps_per_epoch(num_train: int, global_batch_size: int, split: str) -> int:
    """Full global batches per epoch (remainder dropped); 0 is a configuration error."""
    steps = int(num_train // global_batch_size)
    if steps == 0:
        raise UserError(
            f"global_batch_size={global_batch_size} is larger than train split {split!r} "
            f"({num_train} examples); use a batch size <= {num_train}"
        )
    return steps


def check_seed(seed: Any) -> int:
    """Seeds feed numpy SeedSequence, which needs non-negative ints."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"seed={seed!r} must be a non-negative int")
    return int(seed)


def check_start_step(start_step: Any) -> int:
    if not isinstance(start_step, (int, np.integer)) or isinstance(start_step, bool) \
            or start_step < 0:
        raise UserError(f"start_step={start_step!r} must be a non-negative int")
    return int(start_step)


def num_eval_batches(num_eval: int, global_batch_size: int, process_count: int) -> int:
    """Eval batches every process yields: enough for the largest per-process share.

    All processes must run the same number of eval steps (collectives would hang
    otherwise), so the count is taken from ceil(num_eval / process_count) examples.
    """
    local = global_batch_size // process_count
    return max(1, math.ceil(math.ceil(num_eval / process_count) / local))


def pad_batch(images: np.ndarray, labels: np.ndarray, size: int,
              image_shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Pads a (possibly empty) eval batch to `size` rows with mask 0."""
    n = len(labels)
    out_images = np.zeros((size, *image_shape), np.uint8)
    out_labels = np.zeros((size,), np.int32)
    mask = np.zeros((size,), np.float32)
    if n:
        out_images[:n] = images
        out_labels[:n] = labels
        mask[:n] = 1.0
    return {"image": out_images, "label": out_labels, "mask": mask}


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
        return steps_per_epoch(self.info.num_train, global_batch_size, "train")

    def num_eval_batches(self, global_batch_size: int, process_count: int = 1) -> int:
        """How many batches eval_iterator yields on every process."""
        check_batching(global_batch_size, 0, process_count)
        return num_eval_batches(self.info.num_eval, global_batch_size, process_count)


def train_state(step: int, steps_per_epoch_: int, seed: int, global_batch_size: int,
                process_index: int, process_count: int) -> dict[str, Any]:
    """The dict `TrainIterator.state()` returns (plain ints, JSON-serializable)."""
    return {
        "step": int(step),
        "epoch": int(step // steps_per_epoch_),
        "batch_in_epoch": int(step % steps_per_epoch_),
        "steps_per_epoch": int(steps_per_epoch_),
        "seed": int(seed),
        "global_batch_size": int(global_batch_size),
        "process_index": int(process_index),
        "process_count": int(process_count),
    }


def derive_seed(*parts: int) -> int:
    """A 31-bit int seed from integer parts (for TF ops that want a plain int)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)
