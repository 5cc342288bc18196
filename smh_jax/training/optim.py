"""Learning-rate schedules and optimizers from the config (optax)."""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import ml_collections
import optax

from smh_jax.core.tree_paths import jax_path_str


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
    lr = config.optimizer.learning_rate
    if config.optimizer.base_batch_size:
        lr *= config.batch_size / config.optimizer.base_batch_size
    return lr


def create_learning_rate_fn(config: ml_collections.ConfigDict, steps_per_epoch: int,
                            total_steps: int) -> optax.Schedule:
    """Linear warmup, then the configured decay, all in optimizer steps."""
    s = config.schedule
    peak = peak_learning_rate(config)
    warmup = int(round(s.warmup_epochs * steps_per_epoch))
    decay_steps = max(total_steps - warmup, 1)
    if s.name == "one_cycle":
        return optax.cosine_onecycle_schedule(
            transition_steps=total_steps, peak_value=peak, pct_start=s.one_cycle_peak,
            div_factor=25.0, final_div_factor=1.0 / max(s.final_lr_fraction, 1e-4) / 25.0)
    if s.name == "constant":
        main = optax.constant_schedule(peak)
    elif s.name == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps, alpha=s.final_lr_fraction)
    elif s.name == "step":
        boundaries = {int(round(e * steps_per_epoch)) - warmup: s.step_factor
                      for e in s.step_epochs}
        main = optax.piecewise_constant_schedule(peak, boundaries)
    elif s.name == "exponential":
        main = optax.exponential_decay(peak, int(round(s.decay_epochs * steps_per_epoch)),
                                       s.decay_rate, staircase=True)
    else:
        raise ValueError(f"unknown schedule {s.name!r}")
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def decay_mask(params: Any, include: str) -> Any:
    """True for parameters that get weight decay: regex over paths, or ndim > 1 by default."""
    def decide(path, leaf):
        if include:
            return re.search(include, jax_path_str(path)) is not None
        return leaf.ndim > 1
    return jax.tree_util.tree_map_with_path(decide, params)


def create_optimizer(config: ml_collections.ConfigDict, learning_rate_fn: Callable,
                     params: Any, decay_variables: bool = True) -> optax.GradientTransformation:
    """SGD (+Nesterov) with coupled L2, RMSProp (TF-style, EfficientNet) or AdamW.

    `decay_variables=False` leaves weight decay to the loss (an L2 penalty on the
    materialized weights of a compressed model, `smh.weight_decay_on='weights'`).
    """
    o = config.optimizer
    mask = decay_mask(params, o.weight_decay_include)
    parts = []
    if o.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    wd = o.weight_decay if decay_variables else 0.0
    if o.name == "adamw":
        parts.append(optax.adamw(learning_rate_fn, b1=o.b1, b2=o.b2, eps=o.eps,
                                 weight_decay=wd, mask=mask))
        return optax.chain(*parts)
    if wd:
        parts.append(optax.add_decayed_weights(wd, mask))
    if o.name == "sgd":
        parts.append(optax.sgd(learning_rate_fn, momentum=o.momentum or None,
                               nesterov=o.nesterov))
    elif o.name == "rmsprop":
        parts.append(optax.rmsprop(learning_rate_fn, decay=o.rmsprop_decay, eps=o.eps,
                                   momentum=o.momentum or None, nesterov=o.nesterov))
    else:
        raise ValueError(f"unknown optimizer {o.name!r}")
    return optax.chain(*parts)
