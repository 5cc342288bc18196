"""The mesh, state sharding rules and global batches on 8 simulated devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from smh_jax.errors import UserError
from smh_jax.training import sharding


def test_mesh_spans_every_device_on_one_data_axis():
    mesh = sharding.create_mesh()
    assert mesh.shape == {"data": jax.device_count()} == {"data": 8}


def test_rules_first_match_wins_and_the_rest_is_replicated():
    abstract = {"params": {"a": jax.ShapeDtypeStruct((16, 4), jnp.float32),
                           "b": jax.ShapeDtypeStruct((4, 16), jnp.float32)},
                "opt": {"a": jax.ShapeDtypeStruct((16, 4), jnp.float32)}}
    mesh = sharding.create_mesh()
    rules = [("/a$", ("data", None)), ("^params/", (None, "data"))]
    out = sharding.state_shardings(abstract, mesh, rules)
    assert out["params"]["a"].spec == P("data", None) and out["opt"]["a"].spec == P("data", None)
    assert out["params"]["b"].spec == P(None, "data")
    assert sharding.state_shardings(abstract, mesh, [])["params"]["a"].spec == P()


def test_impossible_rules_are_refused():
    mesh = sharding.create_mesh()
    abstract = {"a": jax.ShapeDtypeStruct((12, 4), jnp.float32)}
    with pytest.raises(UserError, match=r"a of shape \(12, 4\) cannot be split 8 ways"):
        sharding.state_shardings(abstract, mesh, [("a", ("data", None))])
    with pytest.raises(UserError, match="has more entries than"):
        sharding.state_shardings(abstract, mesh, [("a", ("data", None, None))])


def test_global_batch_is_split_over_the_data_axis():
    mesh = sharding.create_mesh()
    local = {"image": np.arange(16 * 3, dtype=np.uint8).reshape(16, 3), "label": np.arange(16)}
    batch = sharding.global_batch(local, sharding.batch_sharding(mesh))
    assert batch["image"].shape == (16, 3)
    assert len(batch["image"].addressable_shards) == 8
    assert batch["image"].addressable_shards[1].data.shape == (2, 3)
    np.testing.assert_array_equal(batch["label"], local["label"])
