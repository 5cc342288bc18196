"""Config helpers shared by the tests: load a config file, set dotted keys."""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Optional

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_file(path: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of a config file, as `--config=path[:arg]` would call it."""
    if not os.path.isabs(path):
        path = os.path.join(ROOT, path)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


def set_keys(config: ml_collections.ConfigDict, overrides: dict[str, Any],
             separator: str = ".") -> ml_collections.ConfigDict:
    """Sets 'smh.fraction'-style keys, as --config.smh.fraction=... does; returns config."""
    for key, value in overrides.items():
        *parents, leaf = key.split(separator)
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


# The one tiny run of every loop and command-line test: configs/quickstart.py (the 8x8
# digits) with ResNet-8 at width 0.25 and a few steps. Tests that share it also share
# compiled steps through the persistent compilation cache (conftest.py).
TINY = {"model.name": "resnet8", "model.width_multiplier": 0.25, "batch_size": 16,
        "eval_batch_size": 360, "num_steps": 4, "log_every_steps": 1,
        "checkpoint_every_steps": 1, "keep_checkpoints": 10, "eval_every_steps": 0}


def tiny_config(**overrides: Any) -> ml_collections.ConfigDict:
    """The tiny quickstart with `overrides` ('smh.fraction'-style keys)."""
    return set_keys(load_config_file("configs/quickstart.py"), {**TINY, **overrides})


def tiny_flags(**overrides: Any) -> list[str]:
    """The same run as train.py / eval.py flags."""
    return [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()]
