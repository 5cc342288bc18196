"""Compressed models with logically partitioned parameters, sharded over 8 CPU devices."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import smh_jax
from smh_jax.training import sharding

RULES = (("batch", "data"), ("embed", None), ("mlp", "model"))


class LogicalMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        kernel = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        x = nn.Dense(16, kernel_init=kernel, name="up")(x)
        scale = nn.with_logical_partitioning(nn.initializers.ones, ("mlp",))
        x = nn.LayerNorm(scale_init=scale, use_bias=False, name="ln")(nn.relu(x))
        kernel = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("mlp", "embed"))
        return nn.Dense(8, kernel_init=kernel, name="down")(x)


def test_logical_partitioning_shards_unhashed_params_and_constrains_weights():
    mesh = jax.make_mesh((4, 2), ("data", "model"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    compressed = smh_jax.compress(LogicalMLP(), fraction=0.5)
    x = jax.random.normal(jax.random.key(1), (8, 8))
    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        abstract = jax.eval_shape(compressed.init, jax.random.key(0), x)
        specs = nn.get_partition_spec(abstract)
        shardings = nn.logical_to_mesh_sharding(specs, mesh, RULES)
        variables = jax.jit(compressed.init, out_shardings=shardings)(jax.random.key(0), x)
        ln_scale = variables["params"]["smh"].unhashed["ln"]["scale"]
        assert ln_scale.names == ("mlp",)
        assert ln_scale.value.sharding.spec == P("model")  # the unhashed LayerNorm scale
        assert variables["params"]["smh"].pool["a"].sharding.spec == P()  # factors replicated
        x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
        y = jax.jit(compressed.apply)(variables, x_sharded)
        # The materialized kernel carries its box: the model's own sharding constraint.
        dense = compressed.materialize(variables["params"])
        assert dense["up"]["kernel"].names == ("embed", "mlp")
    want = LogicalMLP().apply({"params": nn.meta.unbox(dense)}, x)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_trainer_sharding_rules_apply_to_a_state_with_boxed_params():
    mesh = sharding.create_mesh()
    compressed = smh_jax.compress(LogicalMLP(), fraction=0.5, side=24)  # 24 rows: 8 x 3
    abstract = jax.eval_shape(compressed.init, jax.random.key(0), jnp.ones((8, 8)))
    shardings = sharding.state_shardings(abstract, mesh, [("smh/pool/a$", ("data", None))])
    assert shardings["params"]["smh"].pool["a"].spec == P("data", None)
    placed = jax.jit(compressed.init, out_shardings=shardings)(jax.random.key(0), jnp.ones((8, 8)))
    assert len(placed["params"]["smh"].pool["a"].addressable_shards) == 8
