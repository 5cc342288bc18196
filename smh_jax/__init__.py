"""Structured Multi-Hashing (SMH; Eban et al., CVPR 2020) for JAX/Flax.

    compressed = smh_jax.compress(model, fraction=0.25)
"""

from smh_jax.core.accounting import accounting, format_accounting
from smh_jax.core.materialize import materialize
from smh_jax.core.options import SMHOptions
from smh_jax.core.params import SMHParams
from smh_jax.errors import UserError
from smh_jax.linen.compress import SMH, compress, smh_params_of

__all__ = [
    "SMH", "SMHOptions", "SMHParams", "UserError", "accounting", "compress",
    "format_accounting", "materialize", "smh_params_of",
]
__version__ = "0.1.0"
