"""smh_jax: Structured Multi-Hashing (Eban et al., CVPR 2020) in JAX/Flax."""

import setuptools

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
    version="0.1.0",
    description="Structured Multi-Hashing model compression for JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["smh_jax", "smh_jax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
