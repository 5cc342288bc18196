"""Orbax checkpoints of the train state: round trip into shardings, fingerprints, tmp dirs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smh_jax.errors import UserError
from smh_jax.training import checkpointing, sharding

META = {"model": {"name": "resnet20", "num_classes": 10}, "smh": {"pool": {"n": 10, "M": 2}}}


def _state():
    return {"params": {"a": jnp.arange(16.0).reshape(8, 2), "b": jnp.ones(3)},
            "step": jnp.int32(7)}


def test_round_trip_restores_values_into_the_target_shardings(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2)
    ckpt.save(7, _state(), {"step": 7, "epoch": 0}, META)
    ckpt.wait()
    mesh = sharding.create_mesh()
    abstract = jax.eval_shape(_state)
    shardings = sharding.state_shardings(abstract, mesh, [("params/a$", ("data", None))])
    state, data_state = ckpt.restore(7, checkpointing.abstract_with_shardings(abstract,
                                                                              shardings))
    ckpt.close()
    np.testing.assert_array_equal(state["params"]["a"], _state()["params"]["a"])
    assert state["params"]["a"].sharding.spec == jax.sharding.PartitionSpec("data", None)
    assert data_state == {"step": 7, "epoch": 0}


def test_keeps_the_last_n(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2, async_save=False)
    for step in (1, 2, 3):
        ckpt.save(step, _state(), {"step": step}, META)
    ckpt.close()
    assert sorted(os.listdir(tmp_path)) == ["2", "3"]


def test_incomplete_save_is_not_listed(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=3, async_save=False)
    ckpt.save(1, _state(), {"step": 1}, META)
    ckpt.close()
    # What a kill in the middle of an Orbax save leaves behind.
    os.makedirs(tmp_path / "2.orbax-checkpoint-tmp-1234" / "state")
    reopened = checkpointing.Checkpointer(str(tmp_path), max_to_keep=3)
    assert reopened.latest_step() == 1 and reopened.all_steps() == [1]
    reopened.close()


def test_fingerprint_mismatch_names_the_field(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2, async_save=False)
    ckpt.save(1, _state(), {"step": 1}, META)
    ckpt.check_compatible(1, META)
    other = {**META, "smh": {"pool": {"n": 10, "M": 3}}}
    with pytest.raises(UserError, match=r"different run \(smh.pool.M: checkpoint has 2, this "
                                        r"config has 3\)"):
        ckpt.check_compatible(1, other)
    with pytest.raises(UserError, match=r"smh: checkpoint has \{'pool'.*this config has None"):
        ckpt.check_compatible(1, {**META, "smh": None})
    ckpt.close()
