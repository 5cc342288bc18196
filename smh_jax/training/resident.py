"""Many small runs at once, with the whole dataset on the device: MNIST-size experiments.

For datasets that fit in device memory (MNIST: 60,000 x 784 floats), the fastest way to
train is to keep every split on the device, run an epoch as one jitted `lax.scan` over
its steps, and train several runs of the same architecture (seeds and learning rates) in
the same program with `jax.vmap`: one compile, one dispatch per epoch, no input pipeline.
Convolutional nets on XLA:CPU train faster with `steps_per_call`: calls of a few steps,
with the steps and the runs unrolled (`train_runs` says why).

    data = resident.load(dataset_config)                 # train / validation / test
    results = resident.train_runs(module, data, recipe, [0.1, 0.3], seeds=[0, 1])

Every run gets its own initialization, data order and dropout stream from its seed (runs
that share a seed differ only in their learning rate), and is evaluated on the validation
and test splits after every epoch. The optimizer is SGD with momentum (HashedNets'
setup), with a cosine learning-rate decay after an optional linear warmup; the learning
rate and the L2 weight decay are per-run inputs, so the runs of a (learning rate, weight
decay) grid share one program.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from smh_jax import data as data_lib
from smh_jax.errors import UserError
from smh_jax.models.spec import count_params

SPLITS = ("train", "validation", "test")
EVAL_CHUNK = 1000  # examples per evaluation step


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Split:
    """One split on the device: normalized float32 images and int32 labels."""

    images: jax.Array
    labels: jax.Array

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ResidentData:
    train: Split
    validation: Split
    test: Split
    num_classes: int = dataclasses.field(metadata={"static": True})

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])


def load(dataset_config: Any, splits: Sequence[str] = ("train", "validation", "test")
         ) -> ResidentData:
    """The three splits of an in-memory source (idx, npz, folder, digits), on the device.

    `splits` names the source's train, validation and test splits. Pixels are normalized
    with the dataset's per-channel mean and std, as the trainer's pipeline does.
    """
    cfg = data_lib.parse_config(dataset_config)
    source = data_lib.registry.load(cfg.source)
    if not hasattr(source, "read_splits"):
        raise UserError(f"dataset.source={cfg.source!r} is not an in-memory source; resident "
                        "training needs one of the sources that read whole splits (idx, npz, "
                        "folder, digits)")
    train_name, validation_name, test_name = splits
    train, validation = source.read_splits(
        dataclasses.replace(cfg, train_split=train_name, eval_split=validation_name))
    _, test = source.read_splits(
        dataclasses.replace(cfg, train_split=train_name, eval_split=test_name))
    info = data_lib.get_info(dataclasses.replace(cfg, train_split=train_name,
                                                 eval_split=test_name))
    mean = np.asarray(info.mean, np.float32)
    std = np.asarray(info.std, np.float32)

    def put(split) -> Split:
        images = (split.images().astype(np.float32) - mean) / std
        return Split(jnp.asarray(images), jnp.asarray(split.labels, jnp.int32))

    return ResidentData(put(train), put(validation), put(test), info.num_classes)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How every run of a group trains (the learning rate is per run; `weight_decay` is
    every run's unless `train_runs` is given one per run)."""

    epochs: int
    batch_size: int = 50
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0  # L2 added to the gradient of every parameter
    warmup_epochs: float = 0.0
    final_lr_fraction: float = 0.0  # the cosine decays to this fraction of the peak

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError(f"recipe: epochs={self.epochs} and batch_size={self.batch_size} "
                            "must be >= 1")
        if not 0.0 <= self.momentum < 1.0:
            raise UserError(f"recipe.momentum: {self.momentum} must be in [0, 1)")
        if not 0.0 <= self.weight_decay < math.inf:
            raise UserError(f"recipe.weight_decay: {self.weight_decay} must be finite and >= 0")

    def schedule(self, steps_per_epoch: int) -> optax.Schedule:
        """A unit-peak schedule; each run multiplies it by its own learning rate."""
        total = self.epochs * steps_per_epoch
        warmup = int(round(self.warmup_epochs * steps_per_epoch))
        if not warmup:  # the same schedule, without optax logging about a 0-step warmup
            return optax.cosine_decay_schedule(1.0, total, alpha=self.final_lr_fraction)
        return optax.warmup_cosine_decay_schedule(
            0.0, 1.0, warmup, max(total, warmup + 1),
            end_value=self.final_lr_fraction)


@dataclasses.dataclass
class RunResult:
    """One run's per-epoch curves and the summary the tables report (errors in %)."""

    learning_rate: float
    seed: int
    trainable_params: int
    train_loss: list[float]
    validation_error: list[float]
    test_error: list[float]
    wall_seconds: float
    weight_decay: float = 0.0

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the lowest validation error (the first, on ties; the last
        epoch if the run never had a finite one)."""
        errors = np.asarray(self.validation_error, np.float64)
        if not np.isfinite(errors).any():
            return len(errors)
        return int(np.nanargmin(errors)) + 1

    @property
    def best_validation_error(self) -> float:
        return float(self.validation_error[self.best_epoch - 1])

    @property
    def test_error_at_best(self) -> float:
        return float(self.test_error[self.best_epoch - 1])

    @property
    def final_test_error(self) -> float:
        return float(self.test_error[-1])

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.train_loss)))


def _split_variables(variables: dict) -> tuple[Any, dict]:
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def _errors(module: nn.Module, params: Any, state: dict, split: Split) -> jax.Array:
    """Misclassified examples of `split` (one run), in chunks of EVAL_CHUNK."""
    n = len(split)
    chunks = -(-n // EVAL_CHUNK)
    pad = chunks * EVAL_CHUNK - n
    images = jnp.pad(split.images, [(0, pad)] + [(0, 0)] * (split.images.ndim - 1))
    labels = jnp.pad(split.labels, (0, pad), constant_values=-1)
    images = images.reshape(chunks, EVAL_CHUNK, *split.images.shape[1:])
    labels = labels.reshape(chunks, EVAL_CHUNK)

    def chunk(total, xs):
        x, y = xs
        logits = module.apply({"params": params, **state}, x, train=False)
        wrong = (jnp.argmax(logits, -1) != y) & (y >= 0)
        return total + jnp.sum(wrong), None

    total, _ = jax.lax.scan(chunk, jnp.zeros((), jnp.int32), (images, labels))
    return total


def train_runs(module: nn.Module, data: ResidentData, recipe: Recipe,
               learning_rates: Sequence[float], seeds: Sequence[int],
               log: Callable[[str], None] = lambda _: None,
               steps_per_call: int = 0,
               weight_decays: Sequence[float] | None = None) -> list[RunResult]:
    """Trains one run per (learning_rate, seed) pair, all at once (module doc).

    `learning_rates` and `seeds` have the same length: run r trains at learning_rates[r]
    from seed seeds[r], with L2 weight decay weight_decays[r] (default: the recipe's for
    every run) added to its gradient before the momentum. Non-finite runs are reported
    (their curves hold NaN), not raised.

    `steps_per_call` = 0 runs each epoch as one jitted `lax.scan`, the runs batched by
    `jax.vmap`. k > 0 runs it as a Python loop over jitted calls of k steps (the last
    takes the remainder, a second compile) with steps and runs unrolled into straight-line
    code: XLA:CPU runs convolution gradients several times slower inside a loop body, and
    convolutions batched over runs (grouped) about twice as slow as one per run. Both
    compute the same steps; the unrolled call compiles in time proportional to k x runs.
    Evaluation scans over chunks of examples, its runs vmapped or (k > 0) unrolled alike.
    """
    if len(learning_rates) != len(seeds) or not learning_rates:
        raise UserError(f"train_runs: {len(learning_rates)} learning rates for {len(seeds)} "
                        "seeds; give one of each per run")
    decays = [recipe.weight_decay] * len(seeds) if weight_decays is None else [
        float(d) for d in weight_decays]
    if len(decays) != len(seeds) or not all(0.0 <= d < math.inf for d in decays):
        raise UserError(f"train_runs: weight_decays {decays} must be one "
                        f"finite number >= 0 per run ({len(seeds)} runs)")
    if steps_per_call < 0:
        raise UserError(f"train_runs: steps_per_call={steps_per_call} must be >= 0 (0: the "
                        "whole epoch in one call)")
    num_runs = len(seeds)
    n_train = len(data.train)
    steps = n_train // recipe.batch_size
    if steps < 1:
        raise UserError(f"recipe.batch_size={recipe.batch_size} exceeds the {n_train} "
                        "training examples")
    schedule = recipe.schedule(steps)
    tx = optax.trace(decay=recipe.momentum, nesterov=recipe.nesterov)
    decayed = any(decays)  # without decay, no L2 term in the step at all
    keys = jax.vmap(lambda s: jax.random.key(s))(jnp.asarray(seeds, jnp.uint32))
    example = data.train.images[:1]

    def init(key):
        init_key, _ = jax.random.split(key)
        variables = module.init({"params": init_key, "dropout": init_key}, example,
                                train=False)
        params, state = _split_variables(variables)
        return params, state, tx.init(params)

    start = time.time()
    params, state, opt_state = jax.jit(jax.vmap(init))(keys)
    trainable = count_params(jax.tree.map(lambda x: x[0], params))
    rates = jnp.asarray(learning_rates, jnp.float32)
    decay_rates = jnp.asarray(decays, jnp.float32)

    def one_step(params, state, opt_state, key, rate, decay, step, batch_index, train):
        x, y = train.images[batch_index], train.labels[batch_index]
        dropout = jax.random.fold_in(jax.random.fold_in(key, 1), step)
        mutable = [c for c in state if c == "batch_stats"]

        def loss_fn(p):
            out = module.apply({"params": p, **state}, x, train=True,
                               rngs={"dropout": dropout}, mutable=mutable or False)
            logits, updates = out if mutable else (out, {})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        if decayed:  # L2: what optax.add_decayed_weights adds, with this run's coefficient
            grads = jax.tree.map(lambda g, p: g + decay * p, grads, params)
        direction, opt_state = tx.update(grads, opt_state, params)
        scale = -rate * schedule(step)
        params = jax.tree.map(lambda p, d: p + scale * d, params, direction)
        return params, {**state, **updates}, opt_state, loss

    def batch_order(epoch_index):
        """(steps, runs, batch) example indices: each run's own shuffle of the epoch."""
        def order(key):
            perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 2),
                                                             epoch_index), n_train)
            return perm[:steps * recipe.batch_size].reshape(steps, recipe.batch_size)

        return jax.vmap(order)(keys).swapaxes(0, 1)

    def every_run(params, state, opt_state, step, batch, train, unroll):
        """One step of every run: vmapped, or (unroll) one program per run."""
        if not unroll:
            return jax.vmap(one_step, in_axes=(0, 0, 0, 0, 0, 0, None, 0, None))(
                params, state, opt_state, keys, rates, decay_rates, step, batch, train)
        run = lambda tree, r: jax.tree.map(lambda x: x[r], tree)  # noqa: E731
        outs = [one_step(run(params, r), run(state, r), run(opt_state, r), keys[r], rates[r],
                         decay_rates[r], step, batch[r], train) for r in range(num_runs)]
        return jax.tree.map(lambda *x: jnp.stack(x), *outs)

    def run_steps(params, state, opt_state, step_numbers, batches, train, unroll):
        # The splits are arguments, not closed-over constants: XLA would copy them into
        # the executable.
        if unroll:  # straight-line code (a scan of length 1 would still be a loop)
            losses = []
            for i in range(step_numbers.shape[0]):
                params, state, opt_state, loss = every_run(
                    params, state, opt_state, step_numbers[i], batches[i], train, True)
                losses.append(loss)
            return params, state, opt_state, jnp.sum(jnp.stack(losses), 0)

        def body(carry, xs):
            params, state, opt_state = carry
            step, batch = xs
            params, state, opt_state, loss = every_run(params, state, opt_state, step, batch,
                                                       train, False)
            return (params, state, opt_state), loss

        (params, state, opt_state), losses = jax.lax.scan(
            body, (params, state, opt_state), (step_numbers, batches))
        return params, state, opt_state, jnp.sum(losses, 0)

    def evaluate(params, state, splits, unroll):
        def errors(p, s):
            return jnp.stack([_errors(module, p, s, splits.validation),
                              _errors(module, p, s, splits.test)])

        if not unroll:
            return jax.vmap(errors)(params, state)
        run = lambda tree, r: jax.tree.map(lambda x: x[r], tree)  # noqa: E731
        return jnp.stack([errors(run(params, r), run(state, r)) for r in range(num_runs)])

    def epoch(params, state, opt_state, epoch_index, splits):
        params, state, opt_state, loss_sum = run_steps(
            params, state, opt_state, epoch_index * steps + jnp.arange(steps),
            batch_order(epoch_index), splits.train, False)
        return params, state, opt_state, loss_sum / steps, evaluate(params, state, splits,
                                                                    False)

    if steps_per_call:
        starts = range(0, steps, steps_per_call)  # the last call takes the remainder
        order_fn = jax.jit(batch_order)
        steps_fn = jax.jit(functools.partial(run_steps, unroll=True), donate_argnums=(0, 1, 2))
        evaluate_fn = jax.jit(functools.partial(evaluate, unroll=True))

        def epoch_fn(params, state, opt_state, epoch_index, splits):
            batches = order_fn(epoch_index)
            first = int(epoch_index) * steps
            loss_sum = 0.0
            for i in starts:
                end = min(i + steps_per_call, steps)
                params, state, opt_state, chunk_loss = steps_fn(
                    params, state, opt_state, jnp.arange(first + i, first + end),
                    batches[i:end], splits.train)
                loss_sum = loss_sum + chunk_loss
            return params, state, opt_state, loss_sum / steps, evaluate_fn(params, state,
                                                                           splits)
    else:
        epoch_fn = jax.jit(epoch, donate_argnums=(0, 1, 2))
    curves = []
    for e in range(recipe.epochs):
        params, state, opt_state, loss, wrong = epoch_fn(params, state, opt_state,
                                                         jnp.asarray(e, jnp.int32), data)
        loss, wrong = jax.device_get((loss, wrong))
        curves.append((loss, wrong))
        finite = np.isfinite(loss)
        best = 100.0 * wrong[finite, 0].min() / len(data.validation) if finite.any() else 100.0
        mean_loss = float(np.mean(loss[finite])) if finite.any() else math.nan
        log(f"epoch {e + 1}/{recipe.epochs}: loss {mean_loss:.4f}, best validation error "
            f"{best:.2f}% ({time.time() - start:.0f} s)")
    wall = time.time() - start
    return [RunResult(
        learning_rate=float(learning_rates[r]), seed=int(seeds[r]), trainable_params=trainable,
        train_loss=[float(loss[r]) for loss, _ in curves],
        validation_error=[_percent(w[r, 0], len(data.validation), loss[r]) for loss, w in curves],
        test_error=[_percent(w[r, 1], len(data.test), loss[r]) for loss, w in curves],
        wall_seconds=wall, weight_decay=decays[r]) for r in range(num_runs)]


def _percent(wrong: Any, total: int, loss: Any) -> float:
    """Error in percent; NaN once a run's loss is not finite (its argmax means nothing)."""
    return float(100.0 * wrong / total) if math.isfinite(float(loss)) else math.nan
