"""What resident training's dispatch costs: one scanned epoch against unrolled calls.

`resident.train_runs` runs an epoch either as one `lax.scan` with the runs vmapped
(`steps_per_call=0`) or as jitted calls of k steps with steps and runs unrolled. Which is
faster depends on the backend and the network (XLA:CPU's convolution gradients are slow
inside a loop body); this measures both on synthetic data of the network's input shape,
in one process, the settings alternating, each timed on the epochs after the first
(which compiles). The validation and test splits hold `eval_examples` each: the default
100 makes an epoch's time that of its training steps; MNIST's 10,000 adds the evaluation
of both splits, which each setting dispatches its own way.

    rows = measure("lenet5", runs=2, settings=(0, 10), examples=2000)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from smh_jax.errors import UserError
from smh_jax.models.spec import ModelSpec
from smh_jax.training import resident


def synthetic_data(examples: int, image_shape: Sequence[int], num_classes: int,
                   seed: int = 0, eval_examples: int = 100) -> resident.ResidentData:
    """Gaussian images and uniform labels: the speed of a step does not depend on them."""
    rng = np.random.default_rng(seed)

    def split(n):
        return resident.Split(
            jnp.asarray(rng.normal(size=(n, *image_shape)), jnp.float32),
            jnp.asarray(rng.integers(0, num_classes, n), jnp.int32))

    return resident.ResidentData(split(examples), split(eval_examples), split(eval_examples),
                                 num_classes)


def measure(net: str, runs: int, settings: Sequence[int], examples: int,
            batch_size: int = 100, epochs: int = 2, repetitions: int = 2,
            image_shape: Sequence[int] = (28, 28, 1),
            eval_examples: int = 100) -> list[dict[str, Any]]:
    """[{steps_per_call, compile_epoch_s, epoch_s, ms_per_run_step, final_loss}], one row
    per setting: epoch_s is the median over repetitions of the fastest later epoch."""
    if epochs < 2 or repetitions < 1 or runs < 1 or eval_examples < 1 or not settings:
        raise UserError(f"measure: epochs={epochs} (>= 2), repetitions={repetitions}, "
                        f"runs={runs}, eval_examples={eval_examples} (>= 1) and "
                        f"settings={list(settings)} (not empty)")
    data = synthetic_data(examples, image_shape, 10, eval_examples=eval_examples)
    module = ModelSpec(net, num_classes=10).create()
    recipe = resident.Recipe(epochs=epochs, batch_size=batch_size)
    steps = examples // batch_size
    samples = {k: [] for k in settings}
    first = {k: [] for k in settings}
    losses = {}
    for repetition in range(repetitions):
        order = list(settings) if repetition % 2 == 0 else list(reversed(settings))
        for k in order:
            stamps = [time.perf_counter()]

            def stamp(_, stamps=stamps):
                stamps.append(time.perf_counter())

            out = resident.train_runs(module, data, recipe, [0.01] * runs, list(range(runs)),
                                      log=stamp, steps_per_call=k)
            epoch_s = np.diff(stamps)
            first[k].append(float(epoch_s[0]))
            samples[k].append(float(epoch_s[1:].min()))
            losses[k] = out[0].train_loss[-1]
    return [dict(steps_per_call=k, compile_epoch_s=float(np.median(first[k])),
                 epoch_s=float(np.median(samples[k])),
                 ms_per_run_step=1e3 * float(np.median(samples[k])) / (steps * runs),
                 final_loss=losses[k]) for k in settings]
