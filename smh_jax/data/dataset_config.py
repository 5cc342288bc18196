"""`config.dataset`: the allowed values of its fields and their validation, in one place.

The fields and their defaults are declared with the rest of the schema in
`smh_jax.training.config_base.base_config`; `parse_config` checks the values and returns
a typed `DataConfig`. Config validation and every data source call it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from smh_jax.data import registry
from smh_jax.errors import UserError

# 'cifar': the host yields raw images; the device pads 4 pixels, crops and flips.
# 'inception': the host takes a random-resized crop + flip (train) or a center crop
#   (eval) at image_size; the device does nothing more.
# 'none': raw images, no augmentation.
AUGMENTS = ("cifar", "inception", "none")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Validated, typed view of `config.dataset`."""

    name: str
    source: str
    path: str | None
    data_dir: str | None
    train_split: str
    eval_split: str
    image_size: int
    augment: str
    shuffle_buffer: int
    cache: bool


FIELDS = tuple(field.name for field in dataclasses.fields(DataConfig))


def _read(config: Any, key: str) -> Any:
    """`config[key]` of a ConfigDict, dict or object; a UserError when it is missing."""
    try:
        return config[key]
    except (KeyError, TypeError, AttributeError):
        pass
    try:
        return getattr(config, key)
    except AttributeError:
        raise UserError(
            f"config.dataset.{key} is missing; a dataset config has the fields "
            f"{', '.join(FIELDS)} (as in config_base.base_config().dataset)"
        ) from None


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def parse_config(config: Any) -> DataConfig:
    """Checks `config.dataset` once, so every later error is about data, not typos."""
    if isinstance(config, DataConfig):
        return config
    values = {key: _read(config, key) for key in FIELDS}
    sources = registry.SOURCES
    source = values["source"]
    if source not in sources:
        raise UserError(f"config.dataset.source: {source!r} is not one of {', '.join(sources)}")
    name = values["name"] or sources[source].default_name
    if not isinstance(name, str) or not name:
        raise UserError(f"config.dataset.name: {name!r} must be a non-empty string")
    augment = values["augment"]
    if augment not in AUGMENTS:
        raise UserError(
            f"config.dataset.augment: {augment!r} is not one of {', '.join(AUGMENTS)}")
    path = values["path"]
    if sources[source].needs_path and not path:
        raise UserError(f"config.dataset.path is empty; source {source!r} reads its data "
                        f"from that path")
    if not _positive_int(values["image_size"]):
        raise UserError(
            f"config.dataset.image_size: {values['image_size']!r} must be a positive int")
    if not _positive_int(values["shuffle_buffer"]):
        raise UserError(
            f"config.dataset.shuffle_buffer: {values['shuffle_buffer']!r} must be an int >= 1")
    for key in ("train_split", "eval_split"):
        if not isinstance(values[key], str) or not values[key]:
            raise UserError(f"config.dataset.{key}: {values[key]!r} must be a non-empty "
                            f"split name")
    return DataConfig(
        name=name,
        source=source,
        path=str(path) if path else None,
        data_dir=str(values["data_dir"]) if values["data_dir"] else None,
        train_split=values["train_split"],
        eval_split=values["eval_split"],
        image_size=int(values["image_size"]),
        augment=augment,
        shuffle_buffer=int(values["shuffle_buffer"]),
        cache=bool(values["cache"]),
    )
