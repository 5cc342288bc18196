"""Test-wide settings: 8 simulated CPU devices (sharding tests) and quiet TensorFlow."""

import os

# Must be set before JAX initializes its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("default", deadline=None, max_examples=25,
                                     print_blob=True)
hypothesis.settings.load_profile("default")
