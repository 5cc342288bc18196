"""Helpers shared by the tests: config files, dotted keys, the tiny run, XLA flags, and
directories built once per test run."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pathlib
import shutil
from typing import Any, Callable, Optional

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA:CPU code generation without LLVM's expensive passes and with the elemental emitters
# instead of the fusion emitters: the tests' programs are small, so they cost compile time,
# not run time. The first two flags took about a third off the suite; the third cuts
# compile time again by about 2.5x (a ResNet-20 and an EfficientNet-B0 train step on one
# core: 12.5-13.9 s -> 4.3-5.7 s).
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                      "--xla_cpu_use_fusion_emitters=false")


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a test process (or a subprocess) with `devices` simulated CPUs."""
    return f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE_FLAGS}"


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
# digits) with a one-hidden-layer MLP (64-32-10, dropout) and a few steps: it compiles in
# a fraction of a second, so the loop, checkpoint and command-line paths dominate. Tests
# of convolutions and BatchNorm state in the loop add `RESNET8` (below). Tests that share
# a config also share compiled steps through the persistent compilation cache
# (conftest.py).
TINY = {"model.name": "mlp", "model.hidden_sizes": (32,), "model.dropout_rate": 0.1,
        "batch_size": 16,
        "eval_batch_size": 360, "num_steps": 4, "log_every_steps": 1,
        "checkpoint_every_steps": 1, "keep_checkpoints": 10, "eval_every_steps": 0}


# The same run with ResNet-8 (x0.25) in place of the MLP: convolutions and BatchNorm state.
# It unsets the MLP's fields; another CIFAR ResNet's name may replace resnet8.
RESNET8 = {"model.name": "resnet8", "model.width_multiplier": 0.25, "model.hidden_sizes": None,
           "model.dropout_rate": None}


def tiny_config(**overrides: Any) -> ml_collections.ConfigDict:
    """The tiny quickstart with `overrides` ('smh.fraction'-style keys)."""
    return set_keys(load_config_file("configs/quickstart.py"), {**TINY, **overrides})


def tiny_flags(**overrides: Any) -> list[str]:
    """The same run as train.py / eval.py flags; a None value leaves the config file's
    setting (a flag cannot reset a field to None)."""
    return [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items() if v is not None]


def built_once(tmp_path_factory: Any, name: str,
               build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """The directory `build(path)` creates, built once per test run: the first pytest-xdist
    worker to ask builds it under a lock, the others wait and reuse it. Read-only for the
    tests (copy it to change it)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    done = shared.with_name(f"{name}.done")
    with open(shared.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(shared, ignore_errors=True)
                build(shared)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return shared
