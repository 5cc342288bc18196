"""Device-side augmentation (pad-4 crop + flip) and normalization."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smh_jax.data import augment
from smh_jax.errors import UserError

PAD = augment.CIFAR_PAD


@functools.partial(jax.jit, static_argnums=2)
def jit_augment(rng, images, kind):
    return augment.augment_batch(rng, images, kind)


def window_of(out: np.ndarray, image: np.ndarray) -> list[tuple[int, int, bool]]:
    """All (dy, dx, flipped) such that `out` is that window of the zero-padded image."""
    h, w, _ = image.shape
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    matches = []
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            win = padded[dy:dy + h, dx:dx + w]
            for flipped in (False, True):
                if np.array_equal(out, win[:, ::-1] if flipped else win):
                    matches.append((dy, dx, flipped))
    return matches


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), content=st.integers(0, 2**31 - 1),
       shape=st.sampled_from([(3, 8, 8, 3), (2, 5, 7, 1)]))
def test_cifar_output_is_a_padded_subwindow(seed, content, shape):
    images = np.random.default_rng(content).integers(1, 256, shape, dtype=np.uint8)
    out = np.asarray(jit_augment(jax.random.key(seed), jnp.asarray(images), "cifar"))
    assert out.shape == images.shape and out.dtype == np.uint8
    for n in range(shape[0]):
        assert window_of(out[n], images[n]), f"example {n} is not a padded sub-window"


def test_cifar_offsets_and_flips_cover_their_range():
    n = 512
    # Each image is its own index pattern, so the window can be read back exactly.
    base = np.arange(6 * 6, dtype=np.uint8).reshape(1, 6, 6, 1) + 1
    images = np.repeat(base, n, axis=0)
    out = np.asarray(jit_augment(jax.random.key(0), jnp.asarray(images), "cifar"))
    found = [window_of(out[i], images[i]) for i in range(n)]
    assert all(found)
    dys = {m[0] for f in found for m in f}
    dxs = {m[1] for f in found for m in f}
    assert dys == set(range(2 * PAD + 1)) and dxs == set(range(2 * PAD + 1))
    flips = np.mean([f[0][2] for f in found if len(f) == 1])
    assert 0.4 < flips < 0.6


def test_cifar_augment_is_a_function_of_the_rng_and_keeps_the_dtype():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), np.uint8))
    key = jax.random.key(3)
    a = jit_augment(key, images, "cifar")
    np.testing.assert_array_equal(a, jit_augment(key, images, "cifar"))
    assert not np.array_equal(a, jit_augment(jax.random.key(4), images, "cifar"))
    assert augment.augment_batch(key, images.astype(jnp.float32), "cifar").dtype == jnp.float32


@pytest.mark.parametrize("kind", ["inception", "none"])
def test_kinds_augmented_on_the_host_pass_through_the_device(kind):
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), np.uint8))
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(0), images, kind),
                                  images)


def test_unknown_kind_is_a_user_error_naming_the_allowed_kinds():
    with pytest.raises(UserError, match="'mixup' is not supported; use one of cifar, "
                                        "inception, none"):
        augment.augment_batch(jax.random.key(0), jnp.zeros((1, 4, 4, 3)), "mixup")


def test_normalize_is_per_channel_and_computed_in_float32():
    images = np.random.default_rng(1).integers(0, 256, (2, 3, 3, 3), np.uint8)
    mean, std = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)
    expected = (images.astype(np.float64) - np.asarray(mean)) / np.asarray(std)
    out = augment.normalize(jnp.asarray(images), mean, std, jnp.float32)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    bf16 = jax.jit(lambda x: augment.normalize(x, mean, std, jnp.bfloat16))(images)
    assert bf16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(bf16, np.float32), expected, atol=2e-2)
