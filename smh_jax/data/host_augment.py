"""Host-side Inception preprocessing for the in-memory sources (NumPy + Pillow).

The TFDS source does the same in tf.data (`tfds_source.py`); both follow the Flax
ImageNet example: a random-resized crop + flip for train, a center crop with 32 pixels
of padding for eval, bicubic resize to image_size.
"""

from __future__ import annotations

import math

import numpy as np

from smh_jax.data import decode

CROP_PADDING = 32  # Eval center crop of the Flax ImageNet example.


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize with Pillow (antialiased when shrinking) to size x size."""
    image_cls = decode.pil()
    channels = image.shape[2]
    pil = image_cls.fromarray(image[..., 0] if channels == 1 else image)
    pil = pil.resize((size, size), image_cls.Resampling.BICUBIC)
    return np.asarray(pil).reshape(size, size, channels)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Eval crop: the central size/(size+32) of the short side, resized to size."""
    h, w = image.shape[:2]
    crop = max(1, int(size / (size + CROP_PADDING) * min(h, w)))
    top, left = (h - crop + 1) // 2, (w - crop + 1) // 2
    return resize(image[top:top + crop, left:left + crop], size)


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
            out = resize(image[top:top + ch, left:left + cw], size)
            break
    else:
        out = center_crop(image, size)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
