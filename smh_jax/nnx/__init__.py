"""The Flax NNX wrapper: `compress` any `flax.nnx` Module (see compress.py).

    import smh_jax.nnx
    compressed = smh_jax.nnx.compress(lambda rngs: Net(rngs=rngs), fraction=0.25,
                                      rngs=nnx.Rngs(0))
"""

from smh_jax.nnx.compress import SMH, HashedSlot, compress

__all__ = ["SMH", "HashedSlot", "compress"]
