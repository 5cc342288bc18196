"""The Flax linen wrapper: `compress` any `flax.linen` Module (see compress.py)."""

from smh_jax.linen.compress import SMH, build_model_layout, compress, smh_params_of

__all__ = ["SMH", "build_model_layout", "compress", "smh_params_of"]
