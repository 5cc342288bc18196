"""smh_jax: Structured Multi-Hashing (Eban et al., CVPR 2020) in JAX/Flax.

The version is written once, as `__version__` in smh_jax/__init__.py; it is read here as
text, because importing the package would need JAX at build time.
"""

import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).resolve().parent


def read_version() -> str:
    text = (HERE / "smh_jax" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("smh_jax/__init__.py has no __version__ = \"...\" line")
    return match.group(1)


INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.4",
    "ml_collections>=1.0",
    "absl-py>=2.0",
    "numpy>=1.26",
    "pillow>=10.0",
    "scikit-learn>=1.3",  # ships the 8x8 digits used by the offline quickstart
    "tensorflow-datasets>=4.9.6",
    # tf.data backs the TFDS input pipeline; the CPU build is enough (JAX owns the accelerator).
    "tensorflow-cpu>=2.16; platform_system == 'Linux' and platform_machine == 'x86_64'",
    "tensorflow>=2.16; platform_system != 'Linux' or platform_machine != 'x86_64'",
    "tensorboardX>=2.6",
]

EXTRAS = {
    "test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "matplotlib>=3.8"],
    "plots": ["matplotlib>=3.8"],
}

setuptools.setup(
    name="smh_jax",
    version=read_version(),
    description="Structured Multi-Hashing model compression for JAX/Flax",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["smh_jax", "smh_jax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
