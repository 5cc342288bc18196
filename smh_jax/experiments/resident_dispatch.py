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

`variants` compares model options too (ModelSpec overrides, e.g. LeNet-5's
`max_pool`), each with every setting, all in the same alternating order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from smh_jax.errors import UserError
from smh_jax.experiments import grid
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


def parse_variant(flag: str, text: str) -> dict[str, Any]:
    """`max_pool=window,dropout_rate=0.1` -> {'max_pool': 'window', 'dropout_rate': 0.1}
    (values as grid.literal reads them); UserError naming `flag` otherwise."""
    variant = {}
    for pair in re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", text):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"{flag}: give key=value pairs, comma-separated "
                            "(e.g. max_pool=window)")
        variant[key.strip()] = grid.literal(value.strip())
    return variant


def measure(net: str, runs: int, settings: Sequence[int], examples: int,
            batch_size: int = 100, epochs: int = 2, repetitions: int = 2,
            image_shape: Sequence[int] = (28, 28, 1),
            eval_examples: int = 100,
            variants: Sequence[Mapping[str, Any]] = ({},)) -> list[dict[str, Any]]:
    """[{model, steps_per_call, compile_epoch_s, epoch_s, ms_per_run_step, final_loss}],
    one row per (variant, setting): `model` is the variant's overrides, epoch_s the median
    over repetitions of the fastest later epoch."""
    if epochs < 2 or repetitions < 1 or runs < 1 or eval_examples < 1 or not settings \
            or not variants:
        raise UserError(f"measure: epochs={epochs} (>= 2), repetitions={repetitions}, "
                        f"runs={runs}, eval_examples={eval_examples} (>= 1), "
                        f"settings={list(settings)} and variants={list(variants)} "
                        "(not empty)")
    data = synthetic_data(examples, image_shape, 10, eval_examples=eval_examples)
    modules = [ModelSpec(net, num_classes=10, overrides=dict(v)).create() for v in variants]
    recipe = resident.Recipe(epochs=epochs, batch_size=batch_size)
    steps = examples // batch_size
    cases = [(v, k) for v in range(len(variants)) for k in settings]
    samples = {c: [] for c in cases}
    first = {c: [] for c in cases}
    losses = {}
    for repetition in range(repetitions):
        for case in cases if repetition % 2 == 0 else list(reversed(cases)):
            v, k = case
            stamps = [time.perf_counter()]

            def stamp(_, stamps=stamps):
                stamps.append(time.perf_counter())

            out = resident.train_runs(modules[v], data, recipe, [0.01] * runs,
                                      list(range(runs)), log=stamp, steps_per_call=k)
            epoch_s = np.diff(stamps)
            first[case].append(float(epoch_s[0]))
            samples[case].append(float(epoch_s[1:].min()))
            losses[case] = out[0].train_loss[-1]
    return [dict(model=dict(variants[v]), steps_per_call=k,
                 compile_epoch_s=float(np.median(first[(v, k)])),
                 epoch_s=float(np.median(samples[(v, k)])),
                 ms_per_run_step=1e3 * float(np.median(samples[(v, k)])) / (steps * runs),
                 final_loss=losses[(v, k)]) for v, k in cases]
