"""Everything built from a config before the first step: model, optimizer, mesh, shapes.

    experiment = build_experiment(config)      # validates; no compute
    state = initial_state(experiment)          # created directly sharded
    train_fn, eval_fn = jit_steps(experiment)

Shared by training, evaluation, the warm start's and the artifacts' evaluation, and the
sweep's sizing (which needs only the model and its shapes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

import smh_jax
from smh_jax import data as data_lib
from smh_jax import models
from smh_jax.errors import UserError
from smh_jax.models.spec import ModelSpec, abstract_variables, count_params
from smh_jax.training import config_base, optim, sharding, steps
from smh_jax.training.train_state import TrainState, new_state

# ----------------------------------------------------------------------------- model


def model_spec(config: ml_collections.ConfigDict, info: data_lib.DatasetInfo) -> ModelSpec:
    """The registry model of `config.model`; classes from the data unless the config sets them."""
    return ModelSpec.from_config(config.model, config.model.num_classes or info.num_classes)


def create_model(spec: ModelSpec, config: ml_collections.ConfigDict) -> Any:
    """The architecture of `spec`, wrapped by SMH unless the run is dense.

    A linen Module, or with config.model.api='nnx' the NNX twin behind the same
    `init`/`apply` and with the same variables (`smh_jax.nnx.linen_bridge`), so every
    step, checkpoint and export below is shared.
    """
    options = config_base.smh_options(config)
    if config.model.api == "nnx":
        from smh_jax.nnx.linen_bridge import LinenBridge  # deferred: NNX only when asked

        return LinenBridge(spec.create_nnx, options)
    base = spec.create()
    return base if options is None else smh_jax.SMH(model=base, options=options)


def input_shape(info: data_lib.DatasetInfo, batch: int = 1) -> tuple[int, ...]:
    return (batch, *info.image_shape)


def check_image_size(config: ml_collections.ConfigDict, info: data_lib.DatasetInfo) -> None:
    """The model must downsample the images to at least one pixel (before any compute)."""
    height, width = info.image_shape[:2]
    minimum = models.min_image_size(config.model.name)
    if min(height, width) < minimum:
        raise UserError(
            f"config.dataset.image_size: images of {height}x{width} are too small for "
            f"{config.model.name}, which needs at least {minimum}x{minimum}")


def trainable_params(params: Any, compressed: bool) -> int:
    """Trainable variables: factors, scales and unhashed parameters of a compressed model."""
    if compressed:
        return int(smh_jax.accounting(smh_jax.smh_params_of(params))["trainable"])
    return count_params(params)


def parameter_counts(params: Any, spec: ModelSpec, shape: tuple[int, ...],
                     compressed: bool) -> dict[str, Any]:
    """Dense count, trainable count, achieved fraction of a model's (abstract) params.

    A compressed model is compared with the model it wraps; a dense run (a width
    baseline) with the full-width architecture.
    """
    if compressed:
        info = smh_jax.accounting(smh_jax.smh_params_of(params))
        return {"dense_params": info["dense_params"], "trainable_params": info["trainable"],
                "fraction": info["fraction"], "smh": info}
    full = count_params(abstract_variables(spec.with_width(1.0).create(), shape)["params"])
    trainable = trainable_params(params, compressed=False)
    return {"dense_params": full, "trainable_params": trainable,
            "fraction": trainable / full, "smh": None}


# ----------------------------------------------------------------------------- state


def _split_variables(variables: dict) -> tuple[Any, dict]:
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def init_variables(module: Any, shape: tuple[int, ...], rng: jax.Array) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    return module.init({"params": params_rng, "dropout": dropout_rng},
                       jnp.zeros(shape, jnp.float32), train=False)


def create_train_state(module: Any, tx: optax.GradientTransformation,
                       shape: tuple[int, ...], rng: jax.Array, use_ema: bool,
                       initial_variables: Optional[dict] = None) -> TrainState:
    """A fresh TrainState (jit this with out_shardings to create it directly sharded).

    `initial_variables` (e.g. the warm start's projection) replace the fresh variables;
    pass them as a jit argument, not a closure, so they are not embedded as constants.
    """
    init_rng, state_rng = jax.random.split(rng)
    params, model_state = _split_variables(init_variables(module, shape, init_rng))
    if initial_variables is not None:
        params, model_state = _split_variables(initial_variables)
    return new_state(params, model_state, tx.init(params), state_rng, use_ema)


# ----------------------------------------------------------------------------- experiment


@dataclasses.dataclass
class Experiment:
    """Everything built from a config before the first step; shared by train and eval."""

    config: ml_collections.ConfigDict
    info: data_lib.DatasetInfo
    source: Any
    spec: ModelSpec
    module: Any  # what is trained: SMH-wrapped or plain, linen or NNX (create_model)
    mesh: jax.sharding.Mesh
    steps_per_epoch: int
    total_steps: int
    learning_rate_fn: Callable
    tx: optax.GradientTransformation
    abstract_state: TrainState
    state_shardings: Any
    meta: dict

    @property
    def compressed(self) -> bool:
        return not config_base.is_dense(self.config)


def check_batch_sizes(config: ml_collections.ConfigDict) -> None:
    devices, processes = jax.device_count(), jax.process_count()
    for name in ("batch_size", "eval_batch_size"):
        size = config[name] or config.batch_size
        if size % devices or size % processes:
            raise UserError(f"config.{name}: {size} is not divisible by the {devices} devices "
                            f"and {processes} processes; use a multiple of {devices}")


def fingerprint(config: ml_collections.ConfigDict, spec: ModelSpec,
                abstract_params: Any, compressed: bool) -> dict:
    """What a checkpoint must match: model, dataset and the SMH layout."""
    meta = {
        "model": {"name": spec.name, "num_classes": spec.num_classes,
                  "width_multiplier": float(spec.width_multiplier)},
        "dataset": {"name": config.dataset.name, "source": config.dataset.source,
                    "image_size": int(config.dataset.image_size)},
        "smh": None,
    }
    if compressed:
        meta["smh"] = smh_jax.smh_params_of(abstract_params).layout.fingerprint()
    return meta


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds model, optimizer and abstract state (no compute)."""
    config_base.validate(config)
    check_batch_sizes(config)
    info = data_lib.get_info(config.dataset)
    check_image_size(config, info)
    spec = model_spec(config, info)
    module = create_model(spec, config)
    compressed = not config_base.is_dense(config)
    steps_per_epoch = info.num_train // config.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"config.batch_size: {config.batch_size} is larger than the "
                        f"{info.num_train} training examples")
    total_steps = config.num_steps or int(round(config.num_epochs * steps_per_epoch))
    learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, total_steps)
    shape = input_shape(info)
    abstract_params = abstract_variables(module, shape)["params"]
    decay_variables = not (compressed and config.smh.weight_decay_on == "weights")
    tx = optim.create_optimizer(config, learning_rate_fn, abstract_params, decay_variables)
    abstract_state = jax.eval_shape(
        lambda r: create_train_state(module, tx, shape, r, bool(config.ema_decay)),
        jax.random.key(0))
    mesh = sharding.create_mesh()
    shardings = sharding.state_shardings(abstract_state, mesh, config.sharding_rules)
    return Experiment(config, info, data_lib.create_source(config.dataset), spec, module,
                      mesh, steps_per_epoch, total_steps, learning_rate_fn, tx,
                      abstract_state, shardings,
                      fingerprint(config, spec, abstract_params, compressed))


def parameter_accounting(experiment: Experiment) -> dict[str, Any]:
    """Dense count, trainable count, achieved fraction of the experiment's model."""
    return parameter_counts(experiment.abstract_state.params, experiment.spec,
                            input_shape(experiment.info), experiment.compressed)


def warm_start(experiment: Experiment) -> Optional[dict]:
    """The projected dense model of config.smh.init_from_dense (computed on the host), or None."""
    path = experiment.config.smh.init_from_dense
    if not path:
        return None
    from smh_jax.formats import warm_start as warm_start_lib

    abstract = experiment.abstract_state
    variables, errors = warm_start_lib.warm_start(path, abstract.params, abstract.model_state)
    logging.info("warm start: projected %s onto the factors (relative error of the weights "
                 "%.4f)", path, errors["overall"])
    return variables


def initial_state(experiment: Experiment) -> TrainState:
    """The sharded state a fresh run starts from (the warm start's projection if configured)."""
    config = experiment.config
    init = jax.jit(functools.partial(
        create_train_state, experiment.module, experiment.tx, input_shape(experiment.info),
        use_ema=bool(config.ema_decay)),
        out_shardings=experiment.state_shardings)
    return init(jax.random.key(config.seed), initial_variables=warm_start(experiment))


def jit_steps(experiment: Experiment) -> tuple[Callable, Callable]:
    """The jitted train step (state donated) and eval step, with explicit shardings."""
    config = experiment.config
    batch_sh = sharding.batch_sharding(experiment.mesh)
    replicated = sharding.replicated(experiment.mesh)
    l2 = 0.0
    if experiment.compressed and config.smh.weight_decay_on == "weights":
        l2 = config.optimizer.weight_decay
    num_classes = experiment.spec.num_classes
    train = jax.jit(
        functools.partial(steps.train_step, module=experiment.module, num_classes=num_classes,
                          tx=experiment.tx, learning_rate_fn=experiment.learning_rate_fn,
                          config=config, info=experiment.info, l2_on_weights=l2),
        in_shardings=(experiment.state_shardings, batch_sh),
        out_shardings=(experiment.state_shardings, replicated), donate_argnums=0)
    evaluate = jax.jit(
        functools.partial(steps.eval_step, module=experiment.module, num_classes=num_classes,
                          config=config, info=experiment.info),
        out_shardings=replicated)
    return train, evaluate
