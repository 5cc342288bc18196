"""The dataset sources, by the name `config.dataset.source` gives.

A source is a module with two functions, imported only when that source is used (so
TensorFlow is imported only for 'tfds'):

    dataset_info(cfg: DataConfig) -> DatasetInfo          # metadata, no pipeline
    data_source(cfg: DataConfig, prefetch: int) -> DataSource

An in-memory source writes only `read_splits(cfg)` and builds both from it with
`in_memory` (see `digits_source.py`). Adding a source is such a module plus one entry
in SOURCES; config validation, get_info() and create_source() then know it.
"""

from __future__ import annotations

import dataclasses
import importlib
import types

from smh_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a source is implemented and what a config must give it."""

    module: str
    needs_path: bool = False  # dataset.path must name its file or directory
    default_name: str = ""  # dataset.name when the config leaves it empty
    requires: str = ""  # pip packages its module imports beyond smh_jax's own


SOURCES: types.MappingProxyType[str, Source] = types.MappingProxyType({
    # A TFDS dataset prepared offline (`tfds build`), read with tf.data.
    "tfds": Source("smh_jax.data.tfds_source", requires="tensorflow-cpu tensorflow-datasets"),
    # One .npz with uint8 `<split>_images`, or encoded `<split>_jpeg` + `<split>_offsets`.
    "npz": Source("smh_jax.data.npz_source", needs_path=True),
    # Image files under `<path>/<split>/<class>/`.
    "folder": Source("smh_jax.data.folder_source", needs_path=True),
    # scikit-learn's bundled 8x8 digits (no download).
    "digits": Source("smh_jax.data.digits_source", default_name="digits"),
    # MNIST-style IDX files (raw or .gz) in `<path>/`, with a held-out validation split.
    "idx": Source("smh_jax.data.idx_source", needs_path=True, default_name="mnist"),
})


def load(name: str) -> types.ModuleType:
    """The module implementing source `name` (a key of SOURCES)."""
    source = SOURCES[name]
    try:
        return importlib.import_module(source.module)
    except ImportError as e:
        if not source.requires:
            raise
        others = ", ".join(repr(n) for n, s in SOURCES.items() if not s.requires)
        raise UserError(
            f"dataset.source={name!r} needs {source.requires} ({e}); install them "
            f"(pip install {source.requires}) or use source {others}"
        ) from None
