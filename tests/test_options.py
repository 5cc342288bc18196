"""SMHOptions: every invalid value is a one-line UserError naming it and what is allowed."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import smh_jax
from smh_jax.core.options import SMHOptions
from smh_jax.errors import UserError


@pytest.mark.parametrize("kwargs,message", [
    ({"fraction": 0.0}, r"smh.fraction: 0.0 is outside the allowed range \(0, 1\]"),
    ({"fraction": float("nan")}, r"smh.fraction: nan is not finite; allowed: \(0, 1\]"),
    ({"fraction": True}, r"smh.fraction: True is not a number"),
    ({"target_params": 5.3e6}, r"smh.target_params: 5300000.0 is not an integer"),
    ({"target_params": 0}, r"smh.target_params: 0 is outside the allowed range"),
    ({"fraction": 0.5, "fan_out_gain": float("nan")}, r"smh.fan_out_gain: nan is not finite"),
    ({"fraction": 0.5, "fan_out_gain": -1}, r"smh.fan_out_gain: -1.0 is outside"),
    ({"fraction": 0.5, "hash_seed": 1.5}, r"smh.hash_seed: 1.5 is not an integer"),
    ({"fraction": 0.5, "hash_seed": -1}, r"smh.hash_seed: -1 is outside the allowed range"),
    ({"fraction": 0.5, "num_hashes": True}, r"smh.num_hashes: True is not an integer"),
    ({"fraction": 0.5, "side": 0}, r"smh.side: 0 is outside the allowed range"),
    ({"fraction": 0.5, "pad_value": float("inf")}, r"smh.pad_value: inf is not finite"),
    ({"fraction": 0.5, "learn_scale": "no"}, r"smh.learn_scale: 'no' is not a boolean"),
    ({"fraction": 0.5, "modifiers": "scale"}, r"smh.modifiers: 'scale' is not a list"),
    ({"fraction": 0.5, "dtype": 32}, r"smh.dtype: 32 is not one of float32"),
])
def test_invalid_values_name_the_value_and_what_is_allowed(kwargs, message):
    with pytest.raises(UserError, match=message):
        SMHOptions(**kwargs)


def test_unknown_options_are_refused_with_the_known_ones():
    with pytest.raises(UserError, match=r"unknown option 'lear_scale' \(did you mean "
                                        r"'learn_scale'\?\); allowed: fraction, target_params"):
        smh_jax.compress(nn.Dense(4), fraction=0.5, lear_scale=False)


def test_numpy_and_jax_scalars_count_as_the_decimal_written():
    assert SMHOptions(fraction=np.float32(0.1)).fraction == 0.1  # not 0.10000000149...
    assert SMHOptions(fraction=jnp.float32(0.56)).fraction == 0.56
    assert SMHOptions(fraction=np.float64(0.25)).fraction == 0.25
    assert SMHOptions(target_params=np.int64(1000)).target_params == 1000
    assert SMHOptions(fraction=0.5, hash_seed=np.uint32(7), side=np.int32(9)).side == 9


def test_a_non_linen_model_is_refused():
    with pytest.raises(UserError, match="takes a flax.linen Module, got a dict"):
        smh_jax.compress({"not": "a model"}, fraction=0.5)
