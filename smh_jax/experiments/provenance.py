"""Where a measurement comes from: the code's commit, library versions, the machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from typing import Any, Optional

import jax

import smh_jax


def git_commit() -> tuple[Optional[str], Optional[bool]]:
    """(HEAD, whether tracked files differ from it) of the checkout smh_jax was imported
    from; (None, None) when it is not a git checkout (e.g. an installed wheel)."""
    source = os.path.dirname(os.path.dirname(os.path.abspath(smh_jax.__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=source, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode:
        return None, None
    return head.stdout.strip(), bool(dirty.stdout.strip())


def _version(module: str) -> Optional[str]:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return None


def environment() -> dict[str, Any]:
    """Devices, library versions, host and commit, for the header of a results file."""
    device = jax.local_devices()[0]
    commit, dirty = git_commit()
    return {
        "device": device.device_kind, "platform": device.platform,
        "device_count": jax.device_count(), "jax_version": jax.__version__,
        "jaxlib_version": _version("jaxlib"), "flax_version": _version("flax"),
        "optax_version": _version("optax"), "smh_jax_version": smh_jax.__version__,
        "python": platform.python_version(), "host": platform.node(),
        "host_cpus": os.cpu_count(), "git_commit": commit, "git_dirty": dirty,
    }


@functools.cache
def at_process_start() -> dict[str, Any]:
    """`environment()` as first seen by this process: long sweeps call it before training,
    so their results name the commit whose code they imported, not the checkout's HEAD
    when they finish."""
    return environment()
