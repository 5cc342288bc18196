"""The configuration schema: every field a config may set, its default and its type.

Each experiment file in configs/ starts from `base_config()` and sets its hyperparameters;
the command line overrides them again (`--config.smh.fraction=0.1`). `validate` runs
before any compute and turns every unknown key, wrong type or impossible combination into
a one-line `UserError`. The allowed values of `config.dataset` are the data package's
(`smh_jax.data.parse_config`), those of the dtypes and `config.smh` the SMH core's.
`parse_arg` and `runlocal` are the config-argument mechanics the experiment files share.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

import ml_collections
from ml_collections import config_dict

from smh_jax.core.options import DTYPES, SMHOptions
from smh_jax.errors import UserError

placeholder = config_dict.placeholder

SCHEDULES = ("constant", "cosine", "step", "exponential", "one_cycle")
OPTIMIZERS = ("sgd", "rmsprop", "adamw")
NONFINITE = ("stop", "skip")
WEIGHT_DECAY_ON = ("variables", "weights")
APIS = ("linen", "nnx")


def base_config() -> ml_collections.ConfigDict:
    """All fields with their defaults (a ResNet/CIFAR-10 recipe unless overridden)."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet32"
    # linen: the zoo's flax.linen model; nnx: its Flax NNX twin (same variables and layout)
    c.model.api = "linen"
    c.model.num_classes = 0  # 0: from the dataset
    c.model.width_multiplier = 1.0
    c.model.dtype = "float32"  # compute dtype (core.options.DTYPES); parameters stay float32
    c.model.dropout_rate = placeholder(float)  # None: the architecture's own default
    c.model.drop_connect_rate = placeholder(float)
    c.model.input_dropout_rate = placeholder(float)  # MLPs: dropout on the input
    c.model.hidden_sizes = placeholder(tuple)  # `mlp`: widths of the hidden layers
    c.model.ranks = placeholder(tuple)  # MLPs: low-rank layers W = U V, one rank per layer
    c.model.learned_projection = placeholder(bool)  # ... U learned (True) or fixed random
    c.model.max_pool = placeholder(str)  # LeNet-5: "tiles" or "window" (layers.max_pool)

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "cifar10"
    c.dataset.source = "tfds"  # a key of smh_jax.data.SOURCES: tfds, npz, folder, digits
    c.dataset.path = ""  # npz file or image folder
    c.dataset.data_dir = placeholder(str)  # TFDS data_dir (None: TFDS default)
    c.dataset.train_split = "train"
    c.dataset.eval_split = "test"
    c.dataset.image_size = 32
    c.dataset.augment = "cifar"  # one of smh_jax.data.AUGMENTS: cifar, inception, none
    c.dataset.shuffle_buffer = 16_384
    c.dataset.cache = True

    c.smh = ml_collections.ConfigDict()
    c.smh.fraction = placeholder(float)  # None or 0: dense (uncompressed)
    c.smh.target_params = placeholder(int)  # alternatively: total trainable variables
    c.smh.pool = "product"
    c.smh.side = placeholder(int)
    c.smh.num_hashes = 1
    c.smh.hash_seed = 0
    c.smh.meta_pools = ("product", "kronecker")
    c.smh.meta_combine = "sum"
    c.smh.index_store = "basic"
    c.smh.pad_value = 0.0
    c.smh.include = ""  # regex over param paths; empty: every float parameter
    c.smh.exclude = ""
    c.smh.hash_normalization = False
    c.smh.modifiers = ("scale",)
    c.smh.learn_scale = True
    c.smh.scale_parameterization = "norm"  # norm (stable) | direct (the plain variant)
    c.smh.fan_out_gain = 2.0
    c.smh.init_range = "auto"
    c.smh.dtype = "float32"  # dtype of the virtual matrix A @ B
    # Weight decay on the trainable variables (factors, scales) or, like the dense recipe,
    # as an L2 penalty on the materialized weights.
    c.smh.weight_decay_on = "variables"
    c.smh.init_from_dense = ""  # dense checkpoint to project onto the factors (warm start)

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1  # peak LR at batch_size (see base_batch_size)
    c.optimizer.base_batch_size = 0  # >0: LR scales linearly as batch_size / base_batch_size
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    # Parameters whose path matches get weight decay; empty: every parameter with ndim > 1.
    c.optimizer.weight_decay_include = ""
    c.optimizer.rmsprop_decay = 0.9
    c.optimizer.eps = 1e-3
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.grad_clip_norm = 0.0  # 0: no clipping

    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 0.0
    c.schedule.step_epochs = (80.0, 120.0)  # step: boundaries (epochs)
    c.schedule.step_factor = 0.1
    c.schedule.decay_epochs = 2.4  # exponential: decay every decay_epochs by decay_rate
    c.schedule.decay_rate = 0.97
    c.schedule.one_cycle_peak = 0.3  # one_cycle: fraction of training spent warming up
    c.schedule.final_lr_fraction = 0.0  # cosine/one_cycle end at this fraction of peak

    c.label_smoothing = 0.0
    c.ema_decay = 0.0  # 0: no EMA; EfficientNet uses 0.9999 and evaluates the EMA weights
    c.batch_size = 128  # global, over all devices and processes
    c.num_epochs = 160.0
    c.num_steps = 0  # >0 overrides num_epochs
    c.eval_batch_size = 0  # 0: batch_size
    c.eval_every_steps = 0  # 0: at the end only
    c.log_every_steps = 100
    c.checkpoint_every_steps = 1000  # 0: at the end only
    c.keep_checkpoints = 3
    c.async_checkpointing = True
    c.nonfinite = "stop"  # stop: halt naming the step | skip: skip such updates, count them
    # Sharding of the train state over the 'data' mesh axis: (regex over state paths,
    # PartitionSpec entries). Unmatched leaves are replicated; the batch is always split.
    c.sharding_rules = ()
    c.description = ""
    return c


# Fields that default to None need their type spelled out.
_OPTIONAL_TYPES = {
    "model.dropout_rate": (float,), "model.drop_connect_rate": (float,),
    "model.input_dropout_rate": (float,), "model.hidden_sizes": (tuple,),
    "model.ranks": (tuple,), "model.learned_projection": (bool,), "model.max_pool": (str,),
    "dataset.data_dir": (str,), "smh.fraction": (float,), "smh.target_params": (int,),
    "smh.side": (int,),
}


def _flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _type_ok(value: Any, default: Any, name: str) -> bool:
    if value is None:
        return default is None or name in _OPTIONAL_TYPES
    allowed = _OPTIONAL_TYPES.get(name) or (type(default),)
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return True
    if isinstance(value, bool) and bool not in allowed:
        return False
    if tuple in allowed and isinstance(value, list):
        return True
    return isinstance(value, allowed)


def check_schema(config: ml_collections.ConfigDict) -> None:
    """Unknown keys and wrong types, each a UserError naming the key and the value."""
    schema = _flatten(base_config())
    for name, value in _flatten(config).items():
        if name not in schema:
            close = difflib.get_close_matches(name, schema, n=1)
            hint = f"; did you mean config.{close[0]}?" if close else ""
            raise UserError(f"unknown config key config.{name}{hint}")
        if not _type_ok(value, schema[name], name):
            expected = (_OPTIONAL_TYPES.get(name) or (type(schema[name]),))[0].__name__
            raise UserError(f"config.{name}: {value!r} has type {type(value).__name__}; "
                            f"expected {expected}")


def is_dense(config: ml_collections.ConfigDict) -> bool:
    return not config.smh.fraction and not config.smh.target_params


def smh_options(config: ml_collections.ConfigDict) -> SMHOptions | None:
    """The SMHOptions a config asks for (None for a dense run). Raises UserError."""
    if is_dense(config):
        return None
    s = config.smh
    return SMHOptions(
        fraction=s.fraction or None, target_params=s.target_params or None, pool=s.pool,
        side=s.side, num_hashes=s.num_hashes, hash_seed=s.hash_seed,
        meta_pools=tuple(s.meta_pools), meta_combine=s.meta_combine, index_store=s.index_store,
        pad_value=s.pad_value, include=s.include, exclude=s.exclude,
        hash_normalization=s.hash_normalization, modifiers=tuple(s.modifiers),
        learn_scale=s.learn_scale, scale_parameterization=s.scale_parameterization,
        fan_out_gain=s.fan_out_gain, init_range=s.init_range, dtype=s.dtype)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"config.{name}: {value!r} is not one of {', '.join(allowed)}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Everything that can be checked without data or compute. Raises UserError."""
    check_schema(config)
    from smh_jax import models  # deferred: keeps `import smh_jax.training` light

    if config.model.name not in models.names():
        raise UserError(f"config.model.name: {config.model.name!r} is not a known model; "
                        f"allowed: {', '.join(models.names())}")
    _choice("model.api", config.model.api, APIS)
    if config.model.api == "nnx" and config.model.name not in models.nnx_names():
        raise UserError(f"config.model.name: {config.model.name!r} has no NNX twin "
                        f"(config.model.api='nnx'); models with one: "
                        f"{', '.join(models.nnx_names())}")
    if config.model.width_multiplier <= 0:
        raise UserError(f"config.model.width_multiplier: {config.model.width_multiplier!r} "
                        "must be > 0")
    if config.model.num_classes < 0:
        raise UserError(f"config.model.num_classes: {config.model.num_classes!r} must be >= 0 "
                        "(0: from the dataset)")
    _choice("model.dtype", config.model.dtype, DTYPES)
    from smh_jax.models.spec import OVERRIDABLE

    overrides = {k: config.model.get(k) for k in OVERRIDABLE if config.model.get(k) is not None}
    try:  # builds the module only (no parameters): checks each override against the model
        models.create(config.model.name, **overrides)
    except UserError as e:
        raise UserError(f"config.model: {e}") from None
    from smh_jax import data  # deferred, as models above

    data.parse_config(config.dataset)
    smh = config.smh
    if smh.fraction is not None and smh.fraction < 0:
        raise UserError(f"config.smh.fraction: {smh.fraction!r} is outside the allowed range "
                        "(0, 1] (0 or None: dense)")
    if smh.fraction and smh.target_params:
        raise UserError(f"config.smh: fraction={smh.fraction!r} and target_params="
                        f"{smh.target_params!r} both set; give one")
    smh_options(config)  # validates every SMH option
    _choice("smh.weight_decay_on", smh.weight_decay_on, WEIGHT_DECAY_ON)
    if smh.init_from_dense and is_dense(config):
        raise UserError("config.smh.init_from_dense is set but the run is dense; set "
                        "config.smh.fraction too")
    _choice("optimizer.name", config.optimizer.name, OPTIMIZERS)
    _choice("schedule.name", config.schedule.name, SCHEDULES)
    _choice("nonfinite", config.nonfinite, NONFINITE)
    if config.optimizer.learning_rate <= 0:
        raise UserError(f"config.optimizer.learning_rate: {config.optimizer.learning_rate!r} "
                        "must be > 0")
    if config.batch_size <= 0:
        raise UserError(f"config.batch_size: {config.batch_size!r} must be > 0")
    if config.num_steps < 0 or (config.num_steps == 0 and config.num_epochs <= 0):
        raise UserError(f"config.num_steps={config.num_steps!r} / num_epochs="
                        f"{config.num_epochs!r}: one of them must be > 0")
    if not 0.0 <= config.ema_decay < 1.0:
        raise UserError(f"config.ema_decay: {config.ema_decay!r} must be in [0, 1)")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise UserError(f"config.label_smoothing: {config.label_smoothing!r} must be in [0, 1)")
    if config.keep_checkpoints < 1:
        raise UserError(f"config.keep_checkpoints: {config.keep_checkpoints!r} must be >= 1")
    for pattern in (config.optimizer.weight_decay_include,
                    *(rule[0] for rule in config.sharding_rules)):
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise UserError(
                f"config: {pattern!r} is not a valid regular expression ({e})") from None
    for rule in config.sharding_rules:
        if len(rule) != 2 or not all(a in (None, "data") for a in rule[1]):
            raise UserError(f"config.sharding_rules: {rule!r} must be (regex, spec) with spec "
                            "entries None or 'data'")


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """big_vision-style config argument: 'runlocal,fraction=0.1' -> typed values."""
    values = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, raw = item.partition("=")
        if key not in values:
            raise UserError(f"config argument {key!r} is unknown; allowed: {', '.join(values)}")
        default = values[key]
        if isinstance(default, bool):
            values[key] = not raw or raw.lower() in ("1", "true", "yes")  # a bare flag: on
        elif not raw:
            raise UserError(f"config argument {key!r} needs a value: {key}=...")
        elif default is None:
            values[key] = raw
        else:
            try:
                values[key] = type(default)(raw)
            except ValueError:
                raise UserError(f"config argument {key}={raw!r}: expected "
                                f"{type(default).__name__}") from None
            if isinstance(default, float) and not math.isfinite(values[key]):
                raise UserError(f"config argument {key}={raw!r}: expected a finite float")
    return ml_collections.ConfigDict(values)


def runlocal(config: ml_collections.ConfigDict, image_size: int | None = None,
             batch_size: int = 16, steps: int = 4) -> ml_collections.ConfigDict:
    """The `runlocal` config argument: a few tiny float32 steps, to check a config on a CPU."""
    config.batch_size = batch_size
    config.eval_batch_size = batch_size
    config.num_steps = steps
    config.log_every_steps = 1
    config.eval_every_steps = 0
    config.checkpoint_every_steps = steps
    if image_size:
        config.dataset.image_size = image_size
    config.model.dtype = "float32"
    return config
