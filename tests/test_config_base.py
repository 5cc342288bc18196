"""The config schema: unknown keys, types, impossible combinations, config arguments."""

import ml_collections
import pytest
from config_helpers import set_keys

from smh_jax.errors import UserError
from smh_jax.training import config_base


def config(**overrides):
    return set_keys(config_base.base_config(), overrides, separator="__")


def test_base_config_is_valid_and_dense():
    c = config_base.base_config()
    config_base.validate(c)
    assert config_base.is_dense(c) and config_base.smh_options(c) is None


def test_smh_options_carry_the_config_values_and_zero_fraction_is_dense():
    options = config_base.smh_options(config(smh__fraction=0.1, smh__pool="kronecker",
                                             smh__modifiers=("scale", "relu")))
    assert options.fraction == 0.1 and options.pool == "kronecker"
    assert options.modifiers == ("scale", "relu") and options.include == ()
    assert config_base.smh_options(config(smh__fraction=0.0)) is None  # 0 means dense


def test_unknown_key_is_refused_suggesting_the_close_one():
    c = config_base.base_config()
    with c.unlocked():
        c.smh.fractoin = 0.1
    with pytest.raises(UserError, match=r"unknown config key config.smh.fractoin; did you mean "
                                        r"config.smh.fraction\?"):
        config_base.validate(c)


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", "128", r"config.batch_size: '128' has type str; expected int"),
    ("smh__learn_scale", 1, r"config.smh.learn_scale: 1 has type int; expected bool"),
    ("num_epochs", "ten", r"config.num_epochs: .ten. has type str; expected float"),
    ("smh__fraction", "0.1", r"config.smh.fraction: '0.1' has type str; expected float"),
])
def test_wrong_types_name_the_key_and_the_expected_type(key, value, message):
    c = config_base.base_config()
    *parents, leaf = key.split("__")
    node = c
    for parent in parents:
        node = node[parent]
    with node.ignore_type():
        node[leaf] = value
    with pytest.raises(UserError, match=message):
        config_base.check_schema(c)


def test_ints_are_accepted_for_float_fields():
    config_base.check_schema(config(num_epochs=10, smh__fraction=1))


@pytest.mark.parametrize("overrides,message", [
    ({"model__name": "resnet33"}, r"'resnet33' is not a known model; allowed: .*resnet32"),
    ({"model__width_multiplier": 0.0}, r"width_multiplier: 0.0 must be > 0"),
    ({"model__dtype": "int8"}, r"model.dtype: 'int8' is not one of float32, bfloat16"),
    ({"dataset__source": "s3"}, r"dataset.source: 's3' is not one of tfds, npz"),
    ({"dataset__source": "npz"}, r"dataset.path is empty"),
    ({"dataset__augment": "mixup"}, r"dataset.augment: 'mixup' is not one of cifar"),
    ({"dataset__image_size": 0}, r"dataset.image_size: 0 must be a positive int"),
    ({"smh__fraction": -0.5}, r"smh.fraction: -0.5 is outside the allowed range"),
    ({"smh__fraction": 1.5}, r"smh.fraction: 1.5 is outside the allowed range \(0, 1\]"),
    ({"smh__fraction": 0.5, "smh__target_params": 1000}, r"both set; give one"),
    ({"smh__fraction": 0.5, "smh__pool": "bloom"}, r"smh.pool: 'bloom' is not one of"),
    ({"smh__init_from_dense": "/x"}, r"init_from_dense is set but the run is dense"),
    ({"optimizer__name": "lion"}, r"optimizer.name: 'lion' is not one of sgd"),
    ({"schedule__name": "linear"}, r"schedule.name: 'linear' is not one of"),
    ({"optimizer__learning_rate": 0.0}, r"learning_rate: 0.0 must be > 0"),
    ({"batch_size": 0}, r"batch_size: 0 must be > 0"),
    ({"num_steps": 0, "num_epochs": 0.0}, r"one of them must be > 0"),
    ({"ema_decay": 1.0}, r"ema_decay: 1.0 must be in \[0, 1\)"),
    ({"nonfinite": "ignore"}, r"nonfinite: 'ignore' is not one of stop, skip"),
    ({"sharding_rules": (("(", (None,)),)}, r"'\(' is not a valid regular expression"),
    ({"sharding_rules": (("a", ("model",)),)}, r"entries None or 'data'"),
])
def test_impossible_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        config_base.validate(config(**overrides))


def test_config_arguments_take_the_type_of_their_default_and_unknown_ones_are_refused():
    args = config_base.parse_arg("runlocal,epochs=30,npz=/d.npz", runlocal=False, epochs=60.0,
                                 npz="")
    assert isinstance(args, ml_collections.ConfigDict)
    assert args.runlocal is True and args.epochs == 30.0 and args.npz == "/d.npz"
    with pytest.raises(UserError, match="config argument 'x' is unknown; allowed: runlocal"):
        config_base.parse_arg("x=1", runlocal=False)
    with pytest.raises(UserError, match=r"config argument epochs='many': expected float"):
        config_base.parse_arg("epochs=many", epochs=1.0)
    # Only a flag may be bare: a bare number or path would silently become True (1.0).
    with pytest.raises(UserError, match="config argument 'epochs' needs a value: epochs=..."):
        config_base.parse_arg("runlocal,epochs", runlocal=False, epochs=60.0)
    with pytest.raises(UserError, match="config argument 'npz' needs a value"):
        config_base.parse_arg("npz", npz="")
    for raw in ("nan", "inf"):
        with pytest.raises(UserError, match=f"epochs='{raw}': expected a finite float"):
            config_base.parse_arg(f"epochs={raw}", epochs=1.0)


def test_runlocal_shrinks_a_config_to_a_few_small_float32_steps():
    c = config(model__dtype="bfloat16")
    config_base.runlocal(c, image_size=64)
    config_base.validate(c)
    assert (c.batch_size, c.eval_batch_size, c.num_steps) == (16, 16, 4)
    assert c.dataset.image_size == 64 and c.model.dtype == "float32"
