"""The 'npz' source: one .npz file holding every split, no TensorFlow needed.

Split `<s>` is either plain uint8 `<s>_images` (N, H, W[, C]) with `<s>_labels`, or
encoded images (JPEG/PNG) concatenated in `<s>_jpeg` with `<s>_offsets` (N+1 byte
offsets) and `<s>_labels`. Headers are read without loading arrays; pixels are
decoded on first use.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from smh_jax.data import decode, in_memory, splits
from smh_jax.data.base import DatasetInfo
from smh_jax.data.dataset_config import DataConfig
from smh_jax.errors import UserError


def _open_member(zf: zipfile.ZipFile, key: str):
    """The member `key` positioned after its .npy header, and the header's (shape, dtype)."""
    f = zf.open(key + ".npy")
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return f, tuple(shape), np.dtype(dtype)


def _member_header(path: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array in an .npz without reading its data."""
    with zipfile.ZipFile(path) as zf:
        f, shape, dtype = _open_member(zf, key)
        f.close()
    return shape, dtype


def _member_prefix(path: str, key: str, nbytes: int) -> np.ndarray:
    """First `nbytes` of a 1-D uint8 npz member, streamed (no full read)."""
    with zipfile.ZipFile(path) as zf:
        f, _, _ = _open_member(zf, key)
        with f:
            return np.frombuffer(f.read(nbytes), np.uint8)


def read_split(path: str, spec: str) -> in_memory.ArraySplit:
    """Split `spec` ('train', 'test[:100]', ...) of the .npz at `path`."""
    if not os.path.isfile(path):
        raise UserError(f"dataset.path={path!r}: no such .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"dataset.path={path!r} is not a readable .npz file ({e})") from None
    available = sorted({
        k[: -len(suffix)]
        for suffix in ("_images", "_jpeg")
        for k in keys
        if k.endswith(suffix) and k[: -len(suffix)] + "_labels" in keys
        and (suffix == "_images" or k[: -len(suffix)] + "_offsets" in keys)
    })

    def size(base: str) -> int:
        if base + "_images" in keys:
            return _member_header(path, base + "_images")[0][0]
        return _member_header(path, base + "_offsets")[0][0] - 1

    base, rng = splits.resolve_split(spec, available, size, path)
    plain = base + "_images" in keys
    with np.load(path, allow_pickle=False) as npz:
        labels = np.asarray(npz[base + "_labels"]).reshape(-1)
        offsets = None if plain else np.asarray(npz[base + "_offsets"], np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: {base}_labels is {labels.dtype}; expected integer labels")
    if labels.shape[0] != size(base):
        raise UserError(
            f"{path}: {base}_labels has {labels.shape[0]} entries but the split has "
            f"{size(base)} images"
        )
    labels = labels[rng.start:rng.stop]
    stat = os.stat(path)
    key = ("npz", os.path.abspath(path), stat.st_mtime_ns, stat.st_size, base, rng.start,
           rng.stop)
    if plain:
        shape, dtype = _member_header(path, base + "_images")
        if dtype != np.uint8 or len(shape) not in (3, 4):
            raise UserError(
                f"{path}: {base}_images is {dtype} {shape}; expected uint8 NHWC (or NHW)"
            )
        image_shape = tuple(shape[1:]) if len(shape) == 4 else (*shape[1:], 1)

        def load() -> np.ndarray:
            with np.load(path, allow_pickle=False) as npz:
                images = npz[base + "_images"]
            return np.ascontiguousarray(images[rng.start:rng.stop].reshape(-1, *image_shape))
    else:
        if len(offsets) < 2:
            raise UserError(f"{path}: {base}_offsets is empty; expected count+1 offsets")
        encoded_key = base + "_jpeg"
        head = _member_prefix(path, encoded_key, int(offsets[1]))
        image_shape = decode.decode_concatenated(head, offsets, [0]).shape[1:]

        def load() -> np.ndarray:
            with np.load(path, allow_pickle=False) as npz:
                encoded = npz[encoded_key]
            return decode.decode_concatenated(encoded, offsets, np.arange(rng.start, rng.stop))
    return in_memory.ArraySplit(labels, tuple(int(d) for d in image_shape), load, key)


def read_splits(cfg: DataConfig) -> tuple[in_memory.ArraySplit, in_memory.ArraySplit]:
    return read_split(cfg.path, cfg.train_split), read_split(cfg.path, cfg.eval_split)


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    return in_memory.dataset_info(cfg, *read_splits(cfg))


def data_source(cfg: DataConfig, prefetch: int = 2) -> in_memory.InMemorySource:
    return in_memory.InMemorySource(cfg, *read_splits(cfg), prefetch=prefetch)
