"""Input pipelines: dataset metadata, host iterators and device-side augmentation.

    info = data.get_info(config.dataset)       # cheap metadata, UserError if unusable
    source = data.create_source(config.dataset)
    it = source.train_iterator(seed=0, global_batch_size=256, start_step=0,
                               process_index=0, process_count=1)
    batch = next(it)  # {'image': uint8 (local, H, W, C), 'label': int32 (local,)}
    it.state()        # {'step': ..., 'epoch': ..., 'seed': ...}; start_step=state['step']
    for batch in source.eval_iterator(global_batch_size=256): ...  # + 'mask' float32

Sources: 'tfds' (prepared TFDS datasets; imports TensorFlow lazily), 'npz', 'folder'
and 'digits' (NumPy/Pillow only, so they work without TensorFlow installed).
"""

from __future__ import annotations

from typing import Any

from smh_jax.data.augment import augment_batch, normalize
from smh_jax.data.info import (
    AUGMENTS,
    SOURCES,
    DataConfig,
    DatasetInfo,
    DataSource,
    TrainIterator,
    parse_config,
)
from smh_jax.errors import UserError

__all__ = [
    "AUGMENTS",
    "SOURCES",
    "DataConfig",
    "DataSource",
    "DatasetInfo",
    "TrainIterator",
    "augment_batch",
    "create_source",
    "get_info",
    "normalize",
    "parse_config",
]


def _tfds_module():
    """The TFDS backend, imported on demand so array sources never need TensorFlow."""
    try:
        from smh_jax.data import tfds_source
    except ImportError as e:
        raise UserError(
            f"dataset.source='tfds' needs tensorflow and tensorflow_datasets ({e}); "
            f"install them (pip install tensorflow-cpu tensorflow-datasets) or use "
            f"source 'npz', 'folder' or 'digits'"
        ) from None
    return tfds_source


def get_info(config: Any) -> DatasetInfo:
    """Metadata of `config.dataset` without building a pipeline.

    Reads TFDS builder info, npz headers/labels or the digits arrays; only an unknown
    array dataset needs its train pixels (for mean/std), which are then kept for
    create_source(). Raises UserError when the data is missing or unprepared.
    """
    cfg = parse_config(config)
    if cfg.source == "tfds":
        return _tfds_module().tfds_info(cfg)
    from smh_jax.data import array_source

    return array_source.array_info(cfg)


def create_source(config: Any, prefetch: int = 2) -> DataSource:
    """A DataSource for `config.dataset`; `prefetch` is the host batch queue depth."""
    cfg = parse_config(config)
    if cfg.source == "tfds":
        return _tfds_module().TfdsDataSource(cfg, prefetch=prefetch)
    from smh_jax.data import array_source

    return array_source.ArrayDataSource(cfg, prefetch=prefetch)
