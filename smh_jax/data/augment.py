"""Device-side augmentation and normalization (pure JAX, jit-friendly).

For small fixed-size datasets (CIFAR) the host ships raw uint8 images and the random
crop + flip run here, inside the jitted train step: it is cheaper to move uint8 pixels
once and augment on the accelerator than to augment on a few host cores.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from smh_jax.data.dataset_config import AUGMENTS
from smh_jax.errors import UserError

CIFAR_PAD = 4

ArrayLike = jax.Array | np.ndarray | Sequence[float] | float


def augment_batch(rng: jax.Array, images: jax.Array, kind: str) -> jax.Array:
    """Train-time augmentation of an NHWC batch; same dtype out as in.

    'cifar': zero-pad 4 pixels, take a random HxW window per example and flip it
    horizontally with probability 1/2. 'inception' and 'none': identity (the host
    already cropped/resized, or there is nothing to do).
    """
    if kind == "cifar":
        return random_crop_flip(rng, images, CIFAR_PAD)
    if kind in ("inception", "none"):
        return images
    raise UserError(f"augment kind={kind!r} is not supported; use one of {', '.join(AUGMENTS)}")


def random_crop_flip(rng: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """Per-example random crop from a zero-padded copy, then random horizontal flip.

    Vectorized: one pad for the batch, a vmapped dynamic_slice (a single gather) for
    the crops and a select for the flips; no Python loop over examples.
    """
    if images.ndim != 4:
        raise UserError(f"images must be NHWC (4-D); got shape {tuple(images.shape)}")
    n, h, w, c = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * pad + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    crops = jax.vmap(crop)(padded, offsets)
    flip = jax.random.bernoulli(flip_rng, 0.5, (n,))
    return jnp.where(flip[:, None, None, None], crops[:, :, ::-1, :], crops)


def normalize(images: jax.Array, mean: ArrayLike, std: ArrayLike,
              dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """(x - mean) / std per channel (0..255 scale stats), computed in float32, cast to dtype.

    The arithmetic stays in float32 even for a bfloat16 `dtype`, so uint8 inputs are
    not rounded before the mean is subtracted.
    """
    mean = jnp.asarray(mean, jnp.float32)
    inv_std = 1.0 / jnp.asarray(std, jnp.float32)
    return ((images.astype(jnp.float32) - mean) * inv_std).astype(dtype)
