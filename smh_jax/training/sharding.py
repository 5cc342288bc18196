"""The device mesh and how the state and batches are laid out on it."""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from smh_jax.core.tree_paths import jax_path_str
from smh_jax.errors import UserError

DATA_AXIS = "data"


def create_mesh() -> Mesh:
    """One 'data' axis over every device of every process.

    Auto axes (GSPMD propagation): recent JAX makes Explicit axes the default, whose
    sharding-in-types rules reject ordinary code such as a vmap over a split batch.
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> Any:
    """Replicated, except leaves whose path matches a rule's regex (first match wins).

    A rule like ('smh/pool/a$', ('data', None)) splits the factor A's rows over devices;
    it applies to the optimizer and EMA copies of A too (their paths end the same way).
    """
    def choose(path, leaf):
        name = jax_path_str(path)
        for pattern, spec in rules:
            if re.search(pattern, name):
                spec = tuple(spec)
                if len(spec) > len(leaf.shape):
                    raise UserError(f"config.sharding_rules: {spec} has more entries than "
                                    f"{name} has dimensions {leaf.shape}")
                for dim, axis in zip(leaf.shape, spec, strict=False):  # a spec may be shorter
                    if axis is not None and dim % mesh.shape[axis]:
                        raise UserError(
                            f"config.sharding_rules: {name} of shape {leaf.shape} cannot be "
                            f"split {mesh.shape[axis]} ways along {spec}")
                return NamedSharding(mesh, PartitionSpec(*spec))
        return NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map_with_path(choose, abstract_state)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles each process's local rows into arrays sharded over the whole mesh."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
