"""How a global batch is laid out over processes, shared by every source.

Global batch i of an epoch is split into contiguous per-process slices, so a run's
batches do not depend on the number of processes. Eval batches are padded (mask 0) so
that every process runs the same number of eval steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from smh_jax.errors import UserError


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_batching(global_batch_size: int, process_index: int, process_count: int) -> int:
    """Validates the multi-process batch layout and returns the local batch size."""
    for key, value in (("global_batch_size", global_batch_size),
                       ("process_count", process_count), ("process_index", process_index)):
        if not _is_int(value):
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


def check_seed(seed: Any) -> int:
    """Seeds feed numpy SeedSequence, which needs non-negative ints."""
    if not _is_int(seed) or seed < 0:
        raise UserError(f"seed={seed!r} must be a non-negative int")
    return int(seed)


def check_start_step(start_step: Any) -> int:
    """A resume position: a non-negative int."""
    if not _is_int(start_step) or start_step < 0:
        raise UserError(f"start_step={start_step!r} must be a non-negative int")
    return int(start_step)


def steps_per_epoch(num_train: int, global_batch_size: int, split: str) -> int:
    """Full global batches per epoch (remainder dropped); 0 is a configuration error."""
    steps = int(num_train // global_batch_size)
    if steps == 0:
        raise UserError(
            f"global_batch_size={global_batch_size} is larger than train split {split!r} "
            f"({num_train} examples); use a batch size <= {num_train}"
        )
    return steps


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


def iterator_state(step: int, steps_per_epoch_: int, seed: int, global_batch_size: int,
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
