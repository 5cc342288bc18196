"""The compression methods of the MNIST benchmark, each at the same stored size."""

import pytest

import smh_jax
from smh_jax.errors import UserError
from smh_jax.experiments import methods
from smh_jax.models.spec import ModelSpec, abstract_variables, count_params

MNIST = (1, 28, 28, 1)
MLP3 = ModelSpec("mlp3", 10)
DENSE = 795_010


@pytest.mark.parametrize("method", ["nn", "lrd", "lrd_learned", "hashnet", "smh"])
@pytest.mark.parametrize("compression", [1 / 8, 1 / 64])
def test_every_method_stores_about_the_factor_of_the_original(method, compression):
    built = methods.build(MLP3, method, compression, MNIST)
    assert built.stored_params == count_params(
        abstract_variables(built.module, MNIST)["params"])
    tolerance = {"nn": 0.03, "lrd": 0.03, "lrd_learned": 0.03}.get(method, 0.01)
    assert methods.relative_size_error(built, DENSE, compression) <= tolerance


def test_nn_narrows_the_hidden_layer_to_the_nearest_width():
    built = methods.build(MLP3, "nn", 1 / 8, MNIST)
    assert built.description["width_multiplier"] == 0.125  # 1000 -> 125 hidden units
    assert built.stored_params == 785 * 125 + 126 * 10


def test_published_lrd_does_not_count_its_fixed_projection():
    built = methods.build(MLP3, "lrd", 1 / 64, MNIST)
    assert built.description["ranks"] == [11, 15]  # round(785 / 64 - 1), round(1001 / 64 - 1)
    variables = abstract_variables(built.module, MNIST)
    assert {k: v.shape for k, v in variables["constants"].items()} == {
        "fc1_u": (784, 11), "fc2_u": (1000, 15)}
    assert built.stored_params == (11 * 1000 + 1000) + (15 * 10 + 10)
    learned = methods.build(MLP3, "lrd_learned", 1 / 64, MNIST)
    assert "constants" not in abstract_variables(learned.module, MNIST)
    assert learned.description["ranks"] == [6, 1]


def test_smh_is_resized_when_the_papers_rule_overshoots_by_more_than_one_percent():
    mlp5 = ModelSpec("mlp5", 10)
    built = methods.build(mlp5, "smh", 1 / 64, MNIST)
    # ceil(T / 2n) with n = 1673 would store 46,852 (+7%); side 1681 and M = 13 store T.
    assert built.description["side"] == 1681
    assert abs(built.stored_params - 2_797_010 / 64) / (2_797_010 / 64) < 0.001
    paper = methods.build(MLP3, "smh", 1 / 8, MNIST)
    assert "side" not in paper.description  # within 1%: the paper's sizing stays


def test_hashnet_is_the_per_layer_signed_pool():
    built = methods.build(MLP3, "hashnet", 1 / 8, MNIST)
    params = abstract_variables(built.module, MNIST)["params"]
    layout = smh_jax.smh_params_of(params).layout
    assert layout.pool.kind == "hashnet" and len(layout.pool.groups) == 2
    assert layout.modifiers == ()


def test_bad_method_arguments_are_user_errors():
    with pytest.raises(UserError, match="method 'rer' is not one of dense, nn"):
        methods.build(MLP3, "rer", 0.5, MNIST)
    with pytest.raises(UserError, match="compression 0 is outside"):
        methods.build(MLP3, "smh", 0, MNIST)
    with pytest.raises(UserError, match="defined for the MLPs"):
        methods.build(ModelSpec("lenet5", 10), "lrd", 0.5, MNIST)
    with pytest.raises(UserError, match="takes no SMH options"):
        methods.build(MLP3, "nn", 0.5, MNIST, pool="kronecker")
