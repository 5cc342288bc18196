"""The train and eval steps: pure functions of (state or variables, batch).

`train_step` is one optimizer step with on-device augmentation; a step whose loss,
gradient or updated parameters are not all finite is not applied (config.nonfinite says
whether training then stops or skips it). `eval_step` returns sums over a padded batch,
so the caller adds them up over the eval split. Both are jitted with explicit shardings
by `experiment.jit_steps`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

import smh_jax
from smh_jax import data as data_lib
from smh_jax.data import augment
from smh_jax.training import optim
from smh_jax.training.train_state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int,
                  smoothing: float) -> jax.Array:
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def weights_l2(params: Any, include: str) -> jax.Array:
    """Sum of squares of the materialized weights that weight decay applies to."""
    dense = smh_jax.materialize(smh_jax.smh_params_of(params), jnp.float32)
    mask = optim.decay_mask(dense, include)
    pairs = zip(jax.tree.leaves(dense), jax.tree.leaves(mask), strict=True)
    return sum(jnp.sum(jnp.square(w)) for w, m in pairs if m)


def preprocess(images: jax.Array, rng: Optional[jax.Array], info: data_lib.DatasetInfo,
               dtype: Any) -> jax.Array:
    """On-device augmentation (train only) and normalization."""
    if rng is not None:
        images = augment.augment_batch(rng, images, info.augment)
    return augment.normalize(images, info.mean, info.std, dtype)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, module: nn.Module,
               num_classes: int, tx: optax.GradientTransformation,
               learning_rate_fn: Callable, config: ml_collections.ConfigDict,
               info: data_lib.DatasetInfo,
               l2_on_weights: float) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; non-finite updates are skipped (see config.nonfinite)."""
    aug_rng, dropout_rng = state.step_keys()
    images = preprocess(batch["image"], aug_rng, info, jnp.dtype(config.model.dtype))
    labels = batch["label"]

    def loss_fn(params):
        logits, new_model_state = module.apply(
            {"params": params, **state.model_state}, images, train=True,
            rngs={"dropout": dropout_rng}, mutable=list(state.model_state))
        loss = cross_entropy(logits, labels, num_classes, config.label_smoothing).mean()
        objective = loss
        if l2_on_weights:
            objective = loss + 0.5 * l2_on_weights * weights_l2(
                params, config.optimizer.weight_decay_include)
        return objective, (loss, logits, new_model_state)

    grads, (loss, logits, new_model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    # A finite loss and gradient can still give non-finite parameters (an infinite learning
    # rate, an overflowing update); such a step must not reach a checkpoint either.
    finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
              & _all_finite((new_params, new_model_state)))
    apply = finite
    if config.nonfinite == "stop":  # after the first bad step, keep the last good state
        apply = finite & (state.first_nonfinite_step < 0)

    def keep_if_applied(new, old):
        return jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)

    new_params = keep_if_applied(new_params, state.params)
    new_model_state = keep_if_applied(new_model_state, state.model_state)
    new_opt_state = keep_if_applied(new_opt_state, state.opt_state)
    ema_params, ema_model_state = state.ema_params, state.ema_model_state
    if config.ema_decay:
        # Debiased EMA (as the EfficientNet reference): short runs do not average in init.
        decay = jnp.minimum(config.ema_decay, (1.0 + state.step) / (10.0 + state.step))
        decay = jnp.where(apply, decay, 1.0)
        mix = lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype)  # noqa: E731
        ema_params = jax.tree.map(mix, ema_params, new_params)
        ema_model_state = jax.tree.map(mix, ema_model_state, new_model_state)
    first_bad = jnp.where(~finite & (state.first_nonfinite_step < 0), state.step,
                          state.first_nonfinite_step)
    new_state = state.replace(
        step=state.step + 1, params=new_params, model_state=new_model_state,
        opt_state=new_opt_state, ema_params=ema_params, ema_model_state=ema_model_state,
        skipped_steps=state.skipped_steps + (~apply).astype(jnp.int32),
        first_nonfinite_step=first_bad)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "learning_rate": learning_rate_fn(state.step),
        "grad_norm": grad_norm,
    }
    return new_state, metrics


def eval_step(variables: dict, batch: dict[str, jax.Array], *, module: nn.Module,
              num_classes: int, config: ml_collections.ConfigDict,
              info: data_lib.DatasetInfo) -> dict[str, jax.Array]:
    """Sums over the (padded) batch: correct, top-5 correct, loss, count."""
    images = preprocess(batch["image"], None, info, jnp.dtype(config.model.dtype))
    logits = module.apply(variables, images, train=False).astype(jnp.float32)
    labels, mask = batch["label"], batch["mask"]
    top5 = jnp.any(jax.lax.top_k(logits, min(5, logits.shape[-1]))[1] == labels[:, None], -1)
    loss = cross_entropy(logits, labels, num_classes, 0.0)
    return {"correct": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            "correct_top5": jnp.sum(top5 * mask), "loss": jnp.sum(loss * mask),
            "count": jnp.sum(mask)}
