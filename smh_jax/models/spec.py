"""One description of a zoo model, and the shape-only questions asked about any model.

    spec = ModelSpec("resnet32", num_classes=10, width_multiplier=0.5)
    module = spec.create()                          # the flax.linen Module
    shapes = abstract_variables(module, (1, 32, 32, 3))   # no compute (jax.eval_shape)
    count_params(shapes["params"])                  # 116,882

The trainer, eval.py, the dense export, the compressed artifact, the sweep and the
benchmark all build their architectures from a `ModelSpec`; its JSON form
(`to_json`/`from_json`) is what the exports store, so a model written by one is
rebuilt identically by the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from smh_jax import models
from smh_jax.core.accounting import count_params  # noqa: F401 - one counter, re-exported
from smh_jax.errors import UserError

# Constructor options a config may override (None there: the model's own default).
OVERRIDABLE = ("dropout_rate", "drop_connect_rate", "input_dropout_rate", "hidden_sizes",
               "ranks", "learned_projection", "max_pool")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry model: name, classes, width, compute dtype and constructor overrides."""

    name: str
    num_classes: int
    width_multiplier: float = 1.0
    dtype: str = "float32"  # compute dtype; parameters are always float32
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def create(self) -> nn.Module:
        """The plain flax.linen Module (UserError naming a bad name, width or override)."""
        return models.create(self.name, num_classes=self.num_classes,
                             width_multiplier=self.width_multiplier,
                             dtype=jnp.dtype(self.dtype), **dict(self.overrides))

    def create_nnx(self, input_shape: tuple[int, ...], *, rngs: Any) -> Any:
        """The Flax NNX twin (an nnx.Module, parameters drawn from `rngs`; UserError if none)."""
        return models.create_nnx(self.name, input_shape, rngs=rngs, num_classes=self.num_classes,
                                 width_multiplier=self.width_multiplier,
                                 dtype=jnp.dtype(self.dtype), **dict(self.overrides))

    def with_width(self, width_multiplier: float) -> ModelSpec:
        return dataclasses.replace(self, width_multiplier=float(width_multiplier))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": int(self.num_classes),
                "width_multiplier": float(self.width_multiplier), "dtype": str(self.dtype),
                "overrides": dict(self.overrides)}

    @classmethod
    def from_json(cls, data: Any, where: str = "model") -> ModelSpec:
        """The spec back from `to_json` (width, dtype and overrides may be absent)."""
        if not isinstance(data, Mapping):
            raise UserError(f"{where} is missing or not an object")
        for key in ("name", "num_classes"):
            if key not in data:
                raise UserError(f"{where}.{key} is missing")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"{where}.{unknown[0]} is not a field of a model spec")
        return cls(name=data["name"], num_classes=data["num_classes"],
                   width_multiplier=data.get("width_multiplier", 1.0),
                   dtype=str(data.get("dtype", "float32")),
                   overrides=dict(data.get("overrides", {})))

    @classmethod
    def from_config(cls, model_config: Any, num_classes: int) -> ModelSpec:
        """From a config's `model` section; overrides left at None are not passed."""
        overrides = {k: model_config[k] for k in OVERRIDABLE
                     if k in model_config and model_config[k] is not None}
        return cls(name=model_config.name, num_classes=int(num_classes),
                   width_multiplier=float(model_config.width_multiplier),
                   dtype=str(model_config.dtype), overrides=overrides)


def abstract_variables(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Shapes and dtypes of `module.init` on an input of `input_shape` (no compute).

    Works for zoo models and for their SMH-compressed wrappers alike (both take
    `train=False` and a 'dropout' rng besides 'params').
    """
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    return jax.eval_shape(
        lambda: module.init(rngs, jnp.zeros(input_shape, jnp.float32), train=False))


