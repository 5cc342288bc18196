"""Decoding encoded images (PNG/JPEG) into uint8 NHWC arrays with Pillow, on threads.

Pillow releases the GIL while decoding and resizing, so a thread pool helps (less for
tiny images, where per-image Python overhead dominates). Pillow is imported on first
use so that `import smh_jax.data` stays light.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

from smh_jax.errors import UserError

# Pillow modes read as one grayscale channel; every other mode is converted to RGB.
GRAYSCALE_MODES = ("L", "1", "I", "I;16", "LA")


def pil() -> ModuleType:
    """`PIL.Image`, imported on first use."""
    from PIL import Image

    return Image


def color_mode(image_mode: str) -> str:
    """The mode an image of `image_mode` is decoded to: 'L' (1 channel) or 'RGB'."""
    return "L" if image_mode in GRAYSCALE_MODES else "RGB"


def num_threads() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Not on Linux.
        return max(1, os.cpu_count() or 1)


def parallel_ranges(fn: Callable[[int, int], None], n: int,
                    threads: int | None = None, chunk: int = 512) -> None:
    """Runs fn(lo, hi) over [0, n) in chunks on a thread pool, re-raising errors."""
    threads = threads or num_threads()
    if threads == 1 or n <= chunk:
        fn(0, n)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="smh_decode") as pool:
        futures = [pool.submit(fn, lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
        for future in futures:
            future.result()


def decode_concatenated(encoded: np.ndarray, offsets: np.ndarray,
                        indices: Sequence[int] | None = None,
                        threads: int | None = None) -> np.ndarray:
    """Decodes images stored as concatenated encoded bytes into uint8 NHWC.

    Image i is encoded[offsets[i]:offsets[i+1]]. All images must share the first
    image's size; they share its color mode (see `color_mode`).
    """
    if indices is None:
        indices = np.arange(len(offsets) - 1)
    indices = np.asarray(indices, np.int64)
    image_cls = pil()
    buf = memoryview(np.ascontiguousarray(encoded, np.uint8))
    if len(indices) == 0:
        return np.zeros((0, 1, 1, 3), np.uint8)

    def open_image(i: int):
        return image_cls.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]]))

    with open_image(int(indices[0])) as first:
        mode = color_mode(first.mode)
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

    parallel_ranges(decode_range, len(indices), threads)
    return out
