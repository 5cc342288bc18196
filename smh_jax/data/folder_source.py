"""The 'folder' source: image files under `<path>/<split>/<class>/*.{png,jpg,jpeg}`.

Labels index the sorted class folders of the train split; every image is converted to
the train split's color mode (grayscale if its first image is) and resized to
image_size x image_size when it differs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from smh_jax.data import decode, in_memory, splits
from smh_jax.data.base import DatasetInfo
from smh_jax.data.dataset_config import DataConfig
from smh_jax.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _listing(split_dir: str) -> tuple[list[str], list[str]]:
    """(image files, their class folder names), sorted by class then file name."""
    names = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    files, file_classes = [], []
    for name in names:
        class_dir = os.path.join(split_dir, name)
        for fname in sorted(os.listdir(class_dir)):
            if fname.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(class_dir, fname))
                file_classes.append(name)
    return files, file_classes


def read_split(root: str, spec: str, image_size: int, classes: Sequence[str] | None = None,
               mode: str | None = None) -> tuple[in_memory.ArraySplit, list[str], str]:
    """Split `spec` of the folder tree at `root`, with its class names and color mode.

    `classes` and `mode` are the train split's (None: take them from this split).
    """
    if not os.path.isdir(root):
        raise UserError(f"dataset.path={root!r}: no such directory")
    available = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    listings: dict[str, tuple[list[str], list[str]]] = {}

    def size(base: str) -> int:
        if base not in listings:
            listings[base] = _listing(os.path.join(root, base))
        return len(listings[base][0])

    base, rng = splits.resolve_split(spec, available, size, root)
    files, file_classes = listings[base]
    if not files[rng.start:rng.stop]:
        raise UserError(
            f"split {spec!r} of {root} has no images; expected "
            f"{os.path.join(root, base, '<class_name>', '*.png|jpg|jpeg')}"
        )
    if classes is None:
        classes = sorted(set(file_classes))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(file_classes) - set(index))
    if unknown:
        raise UserError(
            f"{os.path.join(root, base)} has classes {unknown} that the train split lacks; "
            f"eval classes must be a subset of {list(classes)}"
        )
    labels = np.asarray([index[c] for c in file_classes], np.int32)[rng.start:rng.stop]
    files = files[rng.start:rng.stop]
    image_cls = decode.pil()
    if mode is None:
        with image_cls.open(files[0]) as first:
            mode = decode.color_mode(first.mode)
    channels = 1 if mode == "L" else 3
    image_shape = (image_size, image_size, channels)
    stamp = max((os.stat(f).st_mtime_ns for f in files), default=0)
    key = ("folder", os.path.abspath(root), base, rng.start, rng.stop, len(files), stamp,
           image_size, mode)

    def load() -> np.ndarray:
        out = np.empty((len(files), *image_shape), np.uint8)

        def load_range(lo: int, hi: int) -> None:
            for k in range(lo, hi):
                try:
                    with image_cls.open(files[k]) as img:
                        img = img.convert(mode)
                        if img.size != (image_size, image_size):
                            img = img.resize((image_size, image_size),
                                             image_cls.Resampling.BICUBIC)
                        out[k] = np.asarray(img).reshape(image_shape)
                except OSError as e:
                    raise UserError(f"cannot read image {files[k]!r} ({e})") from None

        decode.parallel_ranges(load_range, len(files), chunk=64)
        return out

    return in_memory.ArraySplit(labels, image_shape, load, key), list(classes), mode


def read_splits(cfg: DataConfig) -> tuple[in_memory.ArraySplit, in_memory.ArraySplit]:
    train, classes, mode = read_split(cfg.path, cfg.train_split, cfg.image_size)
    evals, _, _ = read_split(cfg.path, cfg.eval_split, cfg.image_size, classes, mode)
    return train, evals


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    return in_memory.dataset_info(cfg, *read_splits(cfg))


def data_source(cfg: DataConfig, prefetch: int = 2) -> in_memory.InMemorySource:
    return in_memory.InMemorySource(cfg, *read_splits(cfg), prefetch=prefetch)
