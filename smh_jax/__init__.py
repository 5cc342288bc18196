"""Structured Multi-Hashing (SMH) for JAX/Flax."""
