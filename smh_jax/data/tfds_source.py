"""TFDS source: any prepared TFDS image-classification dataset through tf.data.

Imported only when `dataset.source == 'tfds'`, so the other sources work on machines
without TensorFlow. Nothing is downloaded: the dataset must already be prepared in
`data_dir` (`tfds build <name> --data_dir=...`).

Host pipeline per process p (reads only its own shard of the split):
- fixed-size images with augment 'cifar'/'none': raw uint8 images; the device
  augments them (see `augment.py`), which keeps host work and transfers minimal.
- augment 'inception' (or variable-size images): Inception random-resized crop
  (decode_and_crop_jpeg on a sampled distorted bounding box, area 8-100%, aspect
  3/4-4/3) + horizontal flip for train, center crop with 32 px padding for eval,
  BICUBIC resize (tf.image.resize, no antialias, as the Flax ImageNet example), then
  clip + round to uint8 to keep host->device traffic at 1 byte per pixel.

Determinism: epoch e of process p is a pure function of (seed, e, p): file order via
`ReadConfig.shuffle_seed`, a fixed-seed shuffle buffer, and stateless random crops
seeded by the example's position in the epoch. Resuming at step s rebuilds epoch
s // steps_per_epoch and skips the consumed examples before any decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from smh_jax.data import batching, pixel_stats
from smh_jax.data.base import DatasetInfo, DataSource, TrainIterator
from smh_jax.data.dataset_config import DataConfig
from smh_jax.data.host_augment import CROP_PADDING
from smh_jax.errors import UserError

try:  # JAX owns the accelerator; keep TF (if it is a GPU build) off it.
    tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # TF already initialised its devices.
    pass

_TAG_FILES, _TAG_SHUFFLE, _TAG_AUGMENT = 1, 2, 3
_JPEG_FORMATS = ("jpeg", "jpg")


# --------------------------------------------------------------------------------------
# Builder and metadata.


def _builder(cfg: DataConfig) -> tfds.core.DatasetBuilder:
    """The prepared builder, or a UserError that says how to prepare it offline."""
    try:
        builder = tfds.builder(cfg.name, data_dir=cfg.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(
            f"dataset.name={cfg.name!r} is not a TFDS dataset; use a TFDS name such as "
            f"'cifar10', 'cifar100' or 'imagenet2012' (see `tfds.list_builders()`)"
        ) from None
    except (ValueError, KeyError, AssertionError) as e:
        raise UserError(f"dataset.name={cfg.name!r}: TFDS cannot build it ({e})") from None
    if not builder.is_prepared():
        root = str(builder.data_dir_root)
        manual = ""
        if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
            manual = (f"; it needs a manual download first: put the files in "
                      f"{root}/downloads/manual")
            if cfg.name.startswith("imagenet2012"):
                manual += " (ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar)"
        raise UserError(
            f"TFDS dataset {cfg.name!r} is not prepared in data_dir {root} (looked for "
            f"{builder.data_dir}); prepare it with `tfds build {cfg.name} "
            f"--data_dir={root}`{manual}"
        )
    features = builder.info.features
    keys = list(features.keys()) if isinstance(features, tfds.features.FeaturesDict) else []
    if not (isinstance(features["image"] if "image" in keys else None, tfds.features.Image)
            and isinstance(features["label"] if "label" in keys else None,
                           tfds.features.ClassLabel)):
        raise UserError(
            f"TFDS dataset {cfg.name!r} has features {keys}; expected an 'image' Image "
            f"and a 'label' ClassLabel feature"
        )
    if features["image"].np_dtype != np.uint8:
        raise UserError(
            f"TFDS dataset {cfg.name!r} has {features['image'].np_dtype} images; "
            f"only uint8 images are supported"
        )
    return builder


def _num_examples(builder: tfds.core.DatasetBuilder, split: Any, cfg: DataConfig,
                  key: str) -> int:
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        available = ", ".join(repr(s) for s in builder.info.splits)
        raise UserError(
            f"dataset.{key}={split!r} is not a split of TFDS dataset {cfg.name!r} ({e}); "
            f"available: {available} (TFDS slicing like 'train[:90%]' is allowed)"
        ) from None


class _Layout:
    """How images leave the host: raw fixed-size, or cropped + resized."""

    def __init__(self, builder: tfds.core.DatasetBuilder, cfg: DataConfig):
        feature = builder.info.features["image"]
        shape = tuple(feature.shape)
        h, w, c = shape if len(shape) == 3 else (None, None, None)
        self.channels = int(c) if c else 3
        self.fixed = h is not None and w is not None and c is not None
        self.crop = cfg.augment == "inception" or not self.fixed
        self.jpeg = (feature.encoding_format or "").lower() in _JPEG_FORMATS
        if cfg.augment == "cifar" and not self.fixed:
            raise UserError(
                f"dataset.augment='cifar' needs fixed-size images but {cfg.name!r} has "
                f"shape {tuple(feature.shape)}; use augment='inception'"
            )
        if self.crop:
            self.shape = (cfg.image_size, cfg.image_size, self.channels)
        else:
            if (h, w) != (cfg.image_size, cfg.image_size):
                raise UserError(
                    f"dataset.image_size={cfg.image_size} does not match the {h}x{w} images "
                    f"of {cfg.name!r}; with augment={cfg.augment!r} the host yields raw "
                    f"images, so set image_size={h} or use augment='inception' to resize"
                )
            self.shape = (int(h), int(w), int(c))

    @property
    def decoders(self) -> dict | None:
        return {"image": tfds.decode.SkipDecoding()} if self.crop else None


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    """DatasetInfo from the builder's metadata only (no examples are read)."""
    return _make_info(cfg, _builder(cfg))


def data_source(cfg: DataConfig, prefetch: int = 2) -> TfdsDataSource:
    return TfdsDataSource(cfg, prefetch=prefetch)


def _make_info(cfg: DataConfig,
               builder: tfds.core.DatasetBuilder) -> DatasetInfo:
    layout = _Layout(builder, cfg)
    stats = pixel_stats.known_stats(cfg.name, layout.channels)
    if stats is None:
        stats = ((127.5,) * layout.channels, (127.5,) * layout.channels)
    return DatasetInfo(
        name=cfg.name,
        source="tfds",
        num_classes=int(builder.info.features["label"].num_classes),
        image_shape=layout.shape,
        num_train=_num_examples(builder, cfg.train_split, cfg, "train_split"),
        num_eval=_num_examples(builder, cfg.eval_split, cfg, "eval_split"),
        mean=tuple(float(m) for m in stats[0]),
        std=tuple(float(s) for s in stats[1]),
        augment=cfg.augment,
    )


# --------------------------------------------------------------------------------------
# Preprocessing (tf.data graph functions).


def _center_window(height: tf.Tensor, width: tf.Tensor, size: int) -> tuple:
    crop = tf.cast(size / (size + CROP_PADDING)
                   * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)
    return (height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop


def _random_window(shape: tf.Tensor, seed: tf.Tensor, size: int) -> tuple:
    """Inception distorted-bounding-box window; center window when sampling fails."""
    bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=bbox, seed=seed, min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    top, left = begin[0], begin[1]
    crop_h, crop_w = crop_size[0], crop_size[1]
    # Like the Flax example: a window equal to the whole image means all attempts
    # failed; fall back to the eval center crop.
    failed = tf.logical_and(tf.equal(crop_h, shape[0]), tf.equal(crop_w, shape[1]))
    center = _center_window(shape[0], shape[1], size)
    return tuple(tf.where(failed, c, r)
                 for c, r in zip(center, (top, left, crop_h, crop_w), strict=True))


def _decode_window(data: tf.Tensor, window: Callable, layout: _Layout) -> tf.Tensor:
    """Decodes only the window for JPEG (decode_and_crop_jpeg); full decode otherwise."""
    if layout.jpeg:
        shape = tf.image.extract_jpeg_shape(data)
        top, left, h, w = window(shape)
        return tf.image.decode_and_crop_jpeg(
            data, tf.stack([top, left, h, w]), channels=layout.channels)
    image = tf.io.decode_image(data, channels=layout.channels, expand_animations=False)
    top, left, h, w = window(tf.shape(image))
    return tf.image.crop_to_bounding_box(image, top, left, h, w)


def _resize_uint8(image: tf.Tensor, size: int) -> tf.Tensor:
    image = tf.image.resize(image, [size, size], method=tf.image.ResizeMethod.BICUBIC)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _train_map(layout: _Layout, size: int, epoch_seed: int) -> Callable:
    def fn(index: tf.Tensor, example: dict) -> dict:
        label = tf.cast(example["label"], tf.int32)
        if not layout.crop:
            return {"image": example["image"], "label": label}
        seed = tf.stack([tf.constant(epoch_seed, tf.int64), tf.cast(index, tf.int64)])
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = _decode_window(
            example["image"], lambda shape: _random_window(shape, crop_seed, size), layout)
        image = tf.image.stateless_random_flip_left_right(_resize_uint8(image, size),
                                                          flip_seed)
        return {"image": image, "label": label}

    return fn


def _eval_map(layout: _Layout, size: int) -> Callable:
    def fn(example: dict) -> dict:
        label = tf.cast(example["label"], tf.int32)
        if not layout.crop:
            return {"image": example["image"], "label": label}
        image = _decode_window(
            example["image"], lambda shape: _center_window(shape[0], shape[1], size), layout)
        return {"image": _resize_uint8(image, size), "label": label}

    return fn


def _select(example: dict) -> dict:
    return {"image": example["image"], "label": example["label"]}


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.threading.max_intra_op_parallelism = 1
    return options


# --------------------------------------------------------------------------------------
# Source and iterators.


class TfdsTrainIterator(TrainIterator):
    """Infinite local train batches, one tf.data pipeline per epoch."""

    def __init__(self, make_epoch: Callable[[int, int], tf.data.Dataset], start_step: int,
                 steps: int, state_fn: Callable[[int], dict]):
        self._step = start_step
        self._state_fn = state_fn
        self._batches = _epochs(make_epoch, start_step, steps)

    def __next__(self) -> dict[str, np.ndarray]:
        if self._batches is None:
            raise StopIteration
        batch = next(self._batches)
        self._step += 1
        return batch

    def state(self) -> dict[str, Any]:
        return self._state_fn(self._step)

    def close(self) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None


def _epochs(make_epoch: Callable[[int, int], tf.data.Dataset], start_step: int,
            steps: int) -> Iterator[dict[str, np.ndarray]]:
    epoch, first = divmod(start_step, steps)
    while True:
        count = 0
        for batch in make_epoch(epoch, first).as_numpy_iterator():
            count += 1
            yield batch
        if count != steps - first:  # Would silently desynchronise processes.
            raise RuntimeError(
                f"epoch {epoch} yielded {count} batches, expected {steps - first}")
        epoch, first = epoch + 1, 0


class TfdsDataSource(DataSource):
    """A prepared TFDS dataset; each process reads only its own shard."""

    def __init__(self, cfg: DataConfig, prefetch: int = 2):
        self._cfg = cfg
        self._builder = _builder(cfg)
        self._info = _make_info(cfg, self._builder)
        self._layout = _Layout(self._builder, cfg)
        self._prefetch = prefetch
        self._cached: dict[tuple, tf.data.Dataset] = {}

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def _read(self, split: Any, key: tuple, shuffle_seed: int | None) -> tf.data.Dataset:
        """Reads a shard with only image/label; cached in memory when dataset.cache."""
        if self._cfg.cache and key in self._cached:
            return self._cached[key]
        shuffle_files = shuffle_seed is not None and not self._cfg.cache
        read_config = tfds.ReadConfig(
            shuffle_seed=shuffle_seed if shuffle_files else None,
            try_autocache=False, options=_options(), skip_prefetch=True)
        ds = self._builder.as_dataset(split=split, shuffle_files=shuffle_files,
                                      decoders=self._layout.decoders,
                                      read_config=read_config)
        ds = ds.map(_select, num_parallel_calls=tf.data.AUTOTUNE)
        if self._cfg.cache:
            ds = ds.cache()
            self._cached[key] = ds
        return ds

    def train_iterator(self, seed: int, global_batch_size: int, start_step: int = 0,
                       process_index: int = 0, process_count: int = 1) -> TfdsTrainIterator:
        seed = batching.check_seed(seed)
        start_step = batching.check_start_step(start_step)
        local = batching.check_batching(global_batch_size, process_index, process_count)
        steps = batching.steps_per_epoch(self._info.num_train, global_batch_size,
                                         self._cfg.train_split)
        shard = tfds.even_splits(self._cfg.train_split, n=process_count,
                                 drop_remainder=True)[process_index]
        shard_size = _num_examples(self._builder, shard, self._cfg, "train_split")
        # A cached shard is in memory already, so shuffle it fully (this also makes the
        # first epoch read it to the end, which is what completes tf.data's cache).
        buffer = shard_size if self._cfg.cache else min(self._cfg.shuffle_buffer, shard_size)
        size = self._cfg.image_size

        def make_epoch(epoch: int, first_batch: int) -> tf.data.Dataset:
            ds = self._read(shard, ("train", self._cfg.train_split, process_index,
                                    process_count),
                            batching.derive_seed(seed, epoch, process_index, _TAG_FILES))
            ds = ds.shuffle(buffer, seed=batching.derive_seed(seed, epoch, process_index,
                                                              _TAG_SHUFFLE),
                            reshuffle_each_iteration=False)
            ds = ds.take(steps * local).enumerate().skip(first_batch * local)
            ds = ds.map(_train_map(self._layout, size, batching.derive_seed(
                seed, epoch, process_index, _TAG_AUGMENT)), num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.batch(local, drop_remainder=True)
            if self._prefetch > 0:
                ds = ds.prefetch(self._prefetch)
            return ds.with_options(_options())

        def state(step: int) -> dict[str, Any]:
            return batching.iterator_state(step, steps, seed, global_batch_size,
                                        process_index, process_count)

        return TfdsTrainIterator(make_epoch, start_step, steps, state)

    def eval_iterator(self, global_batch_size: int, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        local = batching.check_batching(global_batch_size, process_index, process_count)
        n_batches = batching.num_eval_batches(self._info.num_eval, global_batch_size,
                                              process_count)
        shard = tfds.even_splits(self._cfg.eval_split, n=process_count,
                                 drop_remainder=False)[process_index]
        if _num_examples(self._builder, shard, self._cfg, "eval_split") == 0:
            # More processes than eval examples: TFDS refuses empty reads; pad only.
            return _padded(None, local, n_batches, self._info.image_shape)
        ds = self._read(shard, ("eval", self._cfg.eval_split, process_index, process_count),
                        None)
        ds = ds.map(_eval_map(self._layout, self._cfg.image_size),
                    num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(local)
        if self._prefetch > 0:
            ds = ds.prefetch(self._prefetch)
        ds = ds.with_options(_options())
        return _padded(ds, local, n_batches, self._info.image_shape)


def _padded(ds: tf.data.Dataset | None, local: int, n_batches: int,
            image_shape: tuple) -> Iterator[dict[str, np.ndarray]]:
    """Pads to full local batches and to the same batch count on every process."""
    count = 0
    for batch in ds.as_numpy_iterator() if ds is not None else ():
        count += 1
        if count > n_batches:
            raise RuntimeError(f"eval shard yielded more than the expected {n_batches} "
                               f"batches; TFDS split metadata disagrees with the data")
        yield batching.pad_batch(batch["image"], batch["label"], local, image_shape)
    empty = np.zeros((0, *image_shape), np.uint8)
    for _ in range(count, n_batches):
        yield batching.pad_batch(empty, np.zeros((0,), np.int32), local, image_shape)
