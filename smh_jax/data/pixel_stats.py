"""Per-channel pixel mean/std (0..255 scale) for `augment.normalize`.

Known datasets use their published constants, so get_info() never reads their pixels;
for any other in-memory dataset they are computed from the train split.
"""

from __future__ import annotations

import numpy as np

Stats = tuple[tuple[float, ...], tuple[float, ...]]

_CIFAR10_STATS = ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
_CIFAR100_STATS = ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4))
_IMAGENET_STATS = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
KNOWN_STATS: dict[str, Stats] = {
    "cifar10": _CIFAR10_STATS,
    "cifar10_1": _CIFAR10_STATS,
    "cifar10_corrupted": _CIFAR10_STATS,
    "cifar100": _CIFAR100_STATS,
    "imagenet2012": _IMAGENET_STATS,
    "imagenet2012_subset": _IMAGENET_STATS,
    "imagenet2012_real": _IMAGENET_STATS,
    "imagenet_v2": _IMAGENET_STATS,
    # MNIST's train split (the usual 0.1307 / 0.3081 on a 0..1 scale).
    "mnist": ((33.32,), (78.57,)),
}


def known_stats(name: str, channels: int) -> Stats | None:
    """Published mean/std for `name` ("cifar10", "imagenet2012/..:5.1.0") with `channels`
    channels, else None."""
    base = name.split(":")[0].split("/")[0].strip().lower()
    stats = KNOWN_STATS.get(base)
    if stats is None or len(stats[0]) != channels:
        return None
    return stats


def channel_stats(images: np.ndarray) -> Stats:
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
