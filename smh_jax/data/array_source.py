"""In-memory sources: .npz files, image folders and scikit-learn's 8x8 digits.

These need only NumPy and Pillow (no TensorFlow), so they run on the GPU machines.
The whole split lives in host memory as uint8 NHWC; batches are gathered by index:
epoch e's order is `np.random.default_rng([seed, e]).permutation(num_train)`, global
batch i is perm[i*B:(i+1)*B], and process p yields its contiguous slice of it, so the
global batch does not depend on the number of processes.
"""

from __future__ import annotations

import collections
import io
import math
import os
import queue
import threading
import weakref
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from smh_jax.data import info as info_lib
from smh_jax.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CROP_PADDING = 32  # Eval center crop of the Flax ImageNet example.
DIGITS_SPLIT_SEED = 0  # Fixed: the digits train/test split never depends on the run seed.
_RNG_TAG_AUGMENT = 0x5A17  # Keeps host-augmentation streams apart from the epoch order.


def _num_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Not on Linux.
        return max(1, os.cpu_count() or 1)


def _pil():
    """Pillow, imported on first use so `import smh_jax.data` stays light."""
    from PIL import Image

    return Image


# --------------------------------------------------------------------------------------
# Decoding.


def decode_jpeg_concat(jpeg: np.ndarray, offsets: np.ndarray,
                       indices: Sequence[int] | None = None,
                       num_threads: int | None = None) -> np.ndarray:
    """Decodes images stored as concatenated encoded bytes into uint8 NHWC.

    Image i is jpeg[offsets[i]:offsets[i+1]]. Pillow releases the GIL while decoding,
    so a thread pool helps (less for tiny images, where per-image Python overhead
    dominates). All images must share the first image's size and channel count.
    """
    if indices is None:
        indices = np.arange(len(offsets) - 1)
    indices = np.asarray(indices, np.int64)
    image_cls = _pil()
    buf = memoryview(np.ascontiguousarray(jpeg, np.uint8))
    if len(indices) == 0:
        return np.zeros((0, 1, 1, 3), np.uint8)

    def open_image(i: int):
        return image_cls.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]]))

    with open_image(int(indices[0])) as first:
        mode = "L" if first.mode in ("L", "1", "I", "I;16", "LA") else "RGB"
        width, height = first.size
    channels = 1 if mode == "L" else 3
    out = np.empty((len(indices), height, width, channels), np.uint8)

    def decode_range(lo: int, hi: int) -> None:
        for k in range(lo, hi):
            i = int(indices[k])
            with open_image(i) as img:
                if img.mode != mode:
                    img = img.convert(mode)
                arr = np.asarray(img)
            if arr.shape[:2] != (height, width):
                raise UserError(
                    f"image {i} is {arr.shape[1]}x{arr.shape[0]} but image 0 is "
                    f"{width}x{height}; all images of an npz split must share one size"
                )
            out[k] = arr.reshape(height, width, channels)

    _parallel_ranges(decode_range, len(indices), num_threads)
    return out


def _parallel_ranges(fn: Callable[[int, int], None], n: int,
                     num_threads: int | None = None, chunk: int = 512) -> None:
    """Runs fn(lo, hi) over [0, n) in chunks on a thread pool, re-raising errors."""
    num_threads = num_threads or _num_threads()
    if num_threads == 1 or n <= chunk:
        fn(0, n)
        return
    with ThreadPoolExecutor(num_threads, thread_name_prefix="smh_decode") as pool:
        futures = [pool.submit(fn, lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
        for future in futures:
            future.result()


# --------------------------------------------------------------------------------------
# Split readers. Each returns metadata cheaply and pixels on demand.


class _Split:
    """One (possibly sliced) split: labels are cheap, pixels are loaded by `load()`."""

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


def _resolve_split(spec: str, available: Sequence[str], sizes: Callable[[str], int],
                   where: str) -> tuple[str, range]:
    """Maps 'train[:90%]' to ('train', range) or raises naming the allowed splits."""
    parsed = info_lib.parse_split(spec)
    allowed = ", ".join(repr(s) for s in available) or "none"
    if parsed is None or parsed[0] not in available:
        raise UserError(
            f"split {spec!r} is not in {where}; available splits: {allowed} "
            f"(optionally sliced like 'train[:90%]' or 'train[100:]')"
        )
    base, lo, hi = parsed
    return base, info_lib.split_range(spec, lo, hi, sizes(base))


def _file_id(path: str) -> tuple:
    stat = os.stat(path)
    return (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def _npz_member_header(path: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array in an .npz without reading its data."""
    with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), np.dtype(dtype)


def _npz_split(path: str, spec: str) -> _Split:
    """A split of an .npz: plain `<s>_images` or JPEG `<s>_jpeg` + `<s>_offsets`."""
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
            return _npz_member_header(path, base + "_images")[0][0]
        return _npz_member_header(path, base + "_offsets")[0][0] - 1

    base, rng = _resolve_split(spec, available, size, path)
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
    key = ("npz", *_file_id(path), base, rng.start, rng.stop)
    if plain:
        shape, dtype = _npz_member_header(path, base + "_images")
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
        jpeg_key = base + "_jpeg"
        head = _npz_member_prefix(path, jpeg_key, int(offsets[1]))
        probe = decode_jpeg_concat(head, offsets, [0])
        image_shape = probe.shape[1:]

        def load() -> np.ndarray:
            with np.load(path, allow_pickle=False) as npz:
                jpeg = npz[jpeg_key]
            return decode_jpeg_concat(jpeg, offsets, np.arange(rng.start, rng.stop))
    return _Split(labels, tuple(int(d) for d in image_shape), load, key)


def _npz_member_prefix(path: str, key: str, nbytes: int) -> np.ndarray:
    """First `nbytes` of a 1-D uint8 npz member, streamed (no full read)."""
    with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return np.frombuffer(f.read(nbytes), np.uint8)


def _folder_split(root: str, spec: str, image_size: int, classes: Sequence[str] | None = None,
                  mode: str | None = None) -> tuple[_Split, list[str], str]:
    """`<root>/<split>/<class>/*.{png,jpg,jpeg}`; images resized to image_size.

    Labels index the sorted class folders of the train split (`classes`); the color mode
    ('L' if the first train image is grayscale, else 'RGB') is applied to every image.
    """
    if not os.path.isdir(root):
        raise UserError(f"dataset.path={root!r}: no such directory")
    available = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))

    def listing(base: str) -> tuple[list[str], list[str]]:
        split_dir = os.path.join(root, base)
        names = sorted(d for d in os.listdir(split_dir)
                       if os.path.isdir(os.path.join(split_dir, d)))
        files, file_classes = [], []
        for name in names:
            class_dir = os.path.join(split_dir, name)
            for fname in sorted(os.listdir(class_dir)):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(class_dir, fname))
                    file_classes.append(name)
        return files, file_classes

    listings: dict[str, tuple[list[str], list[str]]] = {}

    def size(base: str) -> int:
        if base not in listings:
            listings[base] = listing(base)
        return len(listings[base][0])

    base, rng = _resolve_split(spec, available, size, root)
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
    image_cls = _pil()
    if mode is None:
        with image_cls.open(files[0]) as first:
            mode = "L" if first.mode in ("L", "1", "I", "I;16", "LA") else "RGB"
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

        _parallel_ranges(load_range, len(files), chunk=64)
        return out

    return _Split(labels, image_shape, load, key), list(classes), mode


def _digits_split(spec: str) -> _Split:
    """scikit-learn's bundled 8x8 digits, split 80/20 (stratified, fixed seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    n = len(digits.target)
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=0.2, stratify=digits.target, random_state=DIGITS_SPLIT_SEED)
    indices = {"train": np.sort(train_idx), "test": np.sort(test_idx)}
    base, rng = _resolve_split(spec, ["test", "train"], lambda b: len(indices[b]),
                               "the digits dataset")
    idx = indices[base][rng.start:rng.stop]
    images = np.round(digits.images[idx] * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return _Split(digits.target[idx], (8, 8, 1), lambda: images, None)


def _splits(cfg: info_lib.DataConfig) -> tuple[_Split, _Split]:
    if cfg.source == "npz":
        return _npz_split(cfg.path, cfg.train_split), _npz_split(cfg.path, cfg.eval_split)
    if cfg.source == "folder":
        train, classes, mode = _folder_split(cfg.path, cfg.train_split, cfg.image_size)
        evals, _, _ = _folder_split(cfg.path, cfg.eval_split, cfg.image_size, classes, mode)
        return train, evals
    if cfg.source == "digits":
        return _digits_split(cfg.train_split), _digits_split(cfg.eval_split)
    raise UserError(f"dataset.source={cfg.source!r} is not an array source")


def _pixel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std over a uint8 NHWC array, in float64 chunks."""
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for lo in range(0, len(images), 4096):
        chunk = images[lo:lo + 4096].astype(np.float64)
        total += chunk.sum(axis=(0, 1, 2))
        total_sq += np.square(chunk).sum(axis=(0, 1, 2))
    count = max(1, images.shape[0] * images.shape[1] * images.shape[2])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-6))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _yielded_shape(cfg: info_lib.DataConfig, stored: tuple[int, int, int],
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


def _info(cfg: info_lib.DataConfig, train: _Split, evals: _Split) -> info_lib.DatasetInfo:
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
    stats = info_lib.known_stats(cfg.name)
    if stats is not None and len(stats[0]) != image_shape[2]:
        stats = None
    mean, std = stats if stats is not None else _pixel_stats(train.images())
    return info_lib.DatasetInfo(
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


def array_info(cfg: info_lib.DataConfig) -> info_lib.DatasetInfo:
    """DatasetInfo from labels/headers; decodes pixels only for unknown-dataset stats."""
    return _info(cfg, *_splits(cfg))


# --------------------------------------------------------------------------------------
# Host-side Inception preprocessing (NumPy + Pillow; TFDS does the same in tf.data).


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize with Pillow (antialiased when shrinking) to size x size."""
    image_cls = _pil()
    channels = image.shape[2]
    pil = image_cls.fromarray(image[..., 0] if channels == 1 else image)
    pil = pil.resize((size, size), image_cls.Resampling.BICUBIC)
    return np.asarray(pil).reshape(size, size, channels)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Eval crop of the Flax ImageNet example: central size/(size+32) of the short side."""
    h, w = image.shape[:2]
    crop = max(1, int(size / (size + CROP_PADDING) * min(h, w)))
    top, left = (h - crop + 1) // 2, (w - crop + 1) // 2
    return _resize(image[top:top + crop, left:left + crop], size)


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Inception crop (area 8-100%, covering >= 10%, aspect 3/4-4/3, 10 tries) + flip."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(0.08, 1.0)
        aspect = rng.uniform(3 / 4, 4 / 3)
        cw = round(math.sqrt(area * aspect))
        ch = round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h and cw * ch >= 0.1 * h * w:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            out = _resize(image[top:top + ch, left:left + cw], size)
            break
    else:
        out = center_crop(image, size)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------
# Iterators.


class _BatchMaker:
    """Builds local train batch `step` from in-memory arrays (no iterator state).

    Kept separate from the iterator so the prefetch thread does not keep the iterator
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
            return random_resized_crop(images[k], rng, self.image_size)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(_num_threads(), thread_name_prefix="smh_aug")
        return np.stack(list(self._pool.map(one, range(len(images)))))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _produce(make: _BatchMaker, step: int, out: queue.Queue, stop: threading.Event) -> None:
    """Prefetch loop: fills `out` with (step, batch) until `stop` is set."""
    try:
        while not stop.is_set():
            item = (step, make(step))
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += 1
    except BaseException as e:  # noqa: BLE001 - the consumer re-raises it.
        while not stop.is_set():
            try:
                out.put((None, e), timeout=0.1)
                break
            except queue.Full:
                continue
    finally:
        make.close()


class ArrayTrainIterator(info_lib.TrainIterator):
    """Infinite train batches with a small daemon prefetch thread (0 = synchronous)."""

    def __init__(self, make: _BatchMaker, start_step: int, state_fn: Callable[[int], dict],
                 prefetch: int = 2):
        self._make = make
        self._step = start_step
        self._state_fn = state_fn
        self._prefetch = prefetch
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, self._stop.set)

    def __next__(self) -> dict[str, np.ndarray]:
        if self._closed:
            raise StopIteration
        if self._prefetch <= 0:
            batch = self._make(self._step)
        else:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_produce, args=(self._make, self._step, self._queue, self._stop),
                    name="smh_data_prefetch", daemon=True)
                self._thread.start()
            while True:
                try:
                    step, batch = self._queue.get(timeout=1.0)
                    break
                except queue.Empty:
                    if not self._thread.is_alive():
                        raise RuntimeError("data prefetch thread died") from None
            if step is None:
                self.close()
                raise batch
            assert step == self._step, (step, self._step)
        self._step += 1
        return batch

    def state(self) -> dict[str, Any]:
        return self._state_fn(self._step)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        else:
            self._make.close()


class ArrayDataSource(info_lib.DataSource):
    """npz / folder / digits data held in memory; pixels are loaded on first use."""

    def __init__(self, cfg: info_lib.DataConfig, prefetch: int = 2):
        self._cfg = cfg
        self._train, self._eval = _splits(cfg)
        self._info = _info(cfg, self._train, self._eval)
        self._prefetch = prefetch

    @property
    def info(self) -> info_lib.DatasetInfo:
        return self._info

    def train_iterator(self, seed: int, global_batch_size: int, start_step: int = 0,
                       process_index: int = 0, process_count: int = 1) -> ArrayTrainIterator:
        seed = info_lib.check_seed(seed)
        start_step = info_lib.check_start_step(start_step)
        local = info_lib.check_batching(global_batch_size, process_index, process_count)
        steps = info_lib.steps_per_epoch(len(self._train), global_batch_size,
                                         self._cfg.train_split)
        make = _BatchMaker(self._train.images(), self._train.labels, seed, global_batch_size,
                           local, process_index, steps, self._cfg.augment, self._cfg.image_size)

        def state(step: int) -> dict[str, Any]:
            return info_lib.train_state(step, steps, seed, global_batch_size,
                                        process_index, process_count)

        return ArrayTrainIterator(make, start_step, state, self._prefetch)

    def eval_iterator(self, global_batch_size: int, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        local = info_lib.check_batching(global_batch_size, process_index, process_count)
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
            if self._cfg.augment == "inception":
                size = self._cfg.image_size
                batch = np.stack([center_crop(x, size) for x in batch]) if hi > lo else batch
            yield info_lib.pad_batch(batch, labels[lo:hi], local, self._info.image_shape)
