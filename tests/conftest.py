"""Test-wide settings: 8 simulated CPU devices (sharding tests), cheap XLA:CPU code
generation, quiet TensorFlow, and one persistent XLA compilation cache for the whole test
run.

Many tests compile the same small train/eval steps (in-process and in the train.py /
eval.py subprocesses, which inherit the environment): the cache compiles each once.
"""

import os
import shutil
import tempfile

from config_helpers import xla_flags

# Must be set before JAX initializes its backends.
os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="smh_jax_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("default", deadline=None, max_examples=25,
                                     print_blob=True)
hypothesis.settings.load_profile("default")


def pytest_sessionfinish(session):
    """The process that made the cache (the controller under xdist) removes it."""
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
