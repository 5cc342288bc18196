"""Input pipelines: dataset metadata, host iterators and device-side augmentation.

    info = data.get_info(config.dataset)       # cheap metadata, UserError if unusable
    source = data.create_source(config.dataset)
    it = source.train_iterator(seed=0, global_batch_size=256, start_step=0,
                               process_index=0, process_count=1)
    batch = next(it)  # {'image': uint8 (local, H, W, C), 'label': int32 (local,)}
    it.state()        # {'step': ..., 'epoch': ..., 'seed': ...}; start_step=state['step']
    for batch in source.eval_iterator(global_batch_size=256): ...  # + 'mask' float32

`config.dataset` has the fields of `config_base.base_config().dataset`. The sources
(`SOURCES`, see `registry.py`): 'tfds' (prepared TFDS datasets; imports TensorFlow only
when used), and the in-memory 'npz', 'folder' and 'digits' (NumPy and Pillow only).
"""

from __future__ import annotations

from typing import Any

from smh_jax.data import registry
from smh_jax.data.augment import augment_batch, normalize
from smh_jax.data.base import DatasetInfo, DataSource, TrainIterator
from smh_jax.data.dataset_config import AUGMENTS, DataConfig, parse_config
from smh_jax.data.registry import SOURCES

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


def get_info(config: Any) -> DatasetInfo:
    """Metadata of `config.dataset` without building a pipeline.

    Reads TFDS builder info, npz headers/labels or the digits arrays; only an unknown
    in-memory dataset needs its train pixels (for mean/std), which are then kept for
    create_source(). Raises UserError when the data is missing or unprepared.
    """
    cfg = parse_config(config)
    return registry.load(cfg.source).dataset_info(cfg)


def create_source(config: Any, prefetch: int = 2) -> DataSource:
    """A DataSource for `config.dataset`; `prefetch` is the host batch queue depth."""
    cfg = parse_config(config)
    return registry.load(cfg.source).data_source(cfg, prefetch)
