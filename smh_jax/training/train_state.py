"""Explicit training state: everything a step reads and writes, one pytree."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    """step, parameters, non-parameter collections (batch_stats), optimizer and EMA state.

    rng holds raw key data (uint32) so Orbax stores it like any array; each step derives
    its keys with fold_in(rng, step), so a restored run draws exactly the same numbers.
    EMA fields are empty dicts when EMA is off.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    ema_params: Any
    ema_model_state: Any
    rng: jax.Array
    skipped_steps: jax.Array  # updates skipped for a non-finite loss or gradient
    first_nonfinite_step: jax.Array  # -1 while every step has been finite

    def step_keys(self) -> tuple[jax.Array, jax.Array]:
        """(augmentation key, dropout key) of the current step."""
        key = jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)
        aug, dropout = jax.random.split(key)
        return aug, dropout

    def eval_variables(self, use_ema: bool) -> dict[str, Any]:
        if use_ema:
            return {"params": self.ema_params, **self.ema_model_state}
        return {"params": self.params, **self.model_state}


def new_state(params: Any, model_state: Any, opt_state: Any, rng: jax.Array,
              use_ema: bool) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
        opt_state=opt_state, ema_params=params if use_ema else {},
        ema_model_state=model_state if use_ema else {},
        rng=jax.random.key_data(rng), skipped_steps=jnp.zeros((), jnp.int32),
        first_nonfinite_step=jnp.full((), -1, jnp.int32))
