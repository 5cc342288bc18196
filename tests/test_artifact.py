"""The compressed artifact: round trip with identical logits from the artifact alone,
smaller bfloat16 factors, and clear errors for missing or tampered metadata."""

import dataclasses
import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smh_jax
from smh_jax.core.layout import HashedTensor, Layout
from smh_jax.errors import UserError
from smh_jax.formats import artifact
from smh_jax.models.spec import ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SPEC = ModelSpec("resnet8", num_classes=10, width_multiplier=0.25)
X = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A compressed ResNet-8 (x0.25) with non-trivial batch stats, saved once."""
    module = smh_jax.compress(SPEC.create(), fraction=0.3)
    variables = jax.jit(functools.partial(module.init, train=False))(jax.random.key(0), X)
    # Train-mode steps move the batch statistics away from their init.
    step = jax.jit(functools.partial(module.apply, train=True, mutable=["batch_stats"]))
    for _ in range(2):
        variables = {**variables, **step(variables, X)[1]}
    root = tmp_path_factory.mktemp("artifact")
    sizes = artifact.save(str(root / "f32"), module, variables, SPEC, (1, 8, 8, 1))
    return root, module, variables, sizes


def test_round_trip_gives_identical_logits_from_the_artifact_alone(saved):
    root, module, variables, sizes = saved
    loaded_module, loaded = artifact.load(str(root / "f32"))
    assert loaded["params"]["smh"].layout == variables["params"]["smh"].layout
    expected = module.apply(variables, X, train=False)
    np.testing.assert_array_equal(loaded_module.apply(loaded, X, train=False), expected)
    trainable = module.accounting(variables["params"])["trainable"]
    assert sizes["ideal_bytes"] == 4 * trainable == 4 * sizes["trainable_params"]
    # Factors, scales, unhashed params and batch stats: the trainable ones plus the stats.
    stats = sum(x.size for x in jax.tree.leaves(variables["batch_stats"]))
    assert sizes["array_bytes"] == 4 * (trainable + stats)
    assert sizes["bytes"] == artifact.directory_bytes(str(root / "f32")) > sizes["array_bytes"]
    with pytest.raises(UserError, match="already holds an artifact"):
        artifact.save(str(root / "f32"), module, variables, SPEC, (1, 8, 8, 1))


def test_bfloat16_factors_halve_the_factor_bytes(saved):
    root, module, variables, sizes = saved
    half = artifact.save(str(root / "bf16"), module, variables, SPEC, (1, 8, 8, 1),
                         factor_dtype="bfloat16")
    factors = sum(x.size for x in jax.tree.leaves(variables["params"]["smh"].pool))
    assert half["array_bytes"] == sizes["array_bytes"] - 2 * factors
    loaded_module, loaded = artifact.load(str(root / "bf16"))
    pool = loaded["params"]["smh"].pool
    assert all(v.dtype == jnp.float32 for v in pool.values())
    for k, v in pool.items():  # exactly the bfloat16 rounding of the trained factors
        original = variables["params"]["smh"].pool[k]
        np.testing.assert_array_equal(v, original.astype(jnp.bfloat16).astype(jnp.float32))
    # The bfloat16 copy of the float32 artifact holds the same arrays.
    recast = artifact.recast(str(root / "f32"), str(root / "recast"), "bfloat16")
    assert recast["array_bytes"] == half["array_bytes"]
    _, copied = artifact.load(str(root / "recast"))
    for a, b in zip(jax.tree.leaves(copied), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    # A per-layer module from the same artifact computes the same model.
    lean_module, _ = artifact.load(str(root / "bf16"), per_layer=True)
    np.testing.assert_allclose(lean_module.apply(loaded, X, train=False),
                               loaded_module.apply(loaded, X, train=False), rtol=1e-4,
                               atol=1e-5)


def test_metadata_holds_every_field_of_the_layout_and_the_model_spec(saved):
    metadata = artifact.read_metadata(str(saved[0] / "f32"))
    layout = metadata["layout"]
    assert set(layout) == {f.name for f in dataclasses.fields(Layout)}
    written = {f.name for f in dataclasses.fields(HashedTensor) if f.metadata.get("json", True)}
    assert written == {f.name for f in dataclasses.fields(HashedTensor)} - {"box"}
    assert all(set(t) == written for t in layout["hashed"])
    assert ModelSpec.from_json(metadata["model"]) == SPEC


def _as_written_before_tuple_keys(m):
    """Earlier files: tensors and parameters named by '/'-joined paths, no init_mean."""
    for t in m["layout"]["hashed"]:
        t["path"] = "/".join(t.pop("key"))
        t.pop("init_mean")
    m["layout"]["param_order"] = [["/".join(k), h] for k, h in m["layout"]["param_order"]]


def test_artifacts_with_path_strings_still_load(saved):
    root, module, variables, _ = saved
    loaded_module, loaded = artifact.load(_tampered(root, "paths", _as_written_before_tuple_keys))
    assert loaded["params"]["smh"].layout == variables["params"]["smh"].layout
    np.testing.assert_array_equal(loaded_module.apply(loaded, X, train=False),
                                  module.apply(variables, X, train=False))


def _tampered(root, name, edit):
    target = root / name
    shutil.copytree(root / "f32", target)
    path = target / artifact.METADATA_FILE
    metadata = json.loads(path.read_text())
    edit(metadata)
    path.write_text(json.dumps(metadata))
    return str(target)


def _set_shape(m):
    m["layout"]["hashed"][1]["shape"] = [3, 3, 2, 8]  # same size, other shape


def _set_side(m):
    m["layout"]["pool"]["side"] += 1


@pytest.mark.parametrize("name, edit, message", [
    ("no_pool", lambda m: m["layout"].pop("pool"), "layout.pool is missing"),
    ("no_model", lambda m: m.pop("model"), "model is missing"),
    ("bad_version", lambda m: m.update(version=99), "version 99 is not supported"),
    ("bad_model", lambda m: m["model"].update(name="resnet21"), "unknown model 'resnet21'"),
    ("bad_shape", _set_shape,
     r"'layer1_block0/conv1/kernel' shape \(3, 3, 2, 8\); the model's is \(3, 3, 4, 4\)"),
    ("bad_offset", lambda m: m["layout"]["hashed"][2].update(offset=7), r"hashed\[2\].offset"),
    ("bad_side", _set_side, "stored 'pool/a' has shape"),
    ("bad_order", lambda m: m["layout"]["param_order"].pop(0), "param_order"),
])
def test_missing_or_tampered_metadata_is_a_clear_error(saved, name, edit, message):
    root = saved[0]
    with pytest.raises(UserError, match=message):
        artifact.load(_tampered(root, name, edit))


def test_not_an_artifact(tmp_path):
    with pytest.raises(UserError, match="is not an SMH artifact"):
        artifact.load(str(tmp_path))
    (tmp_path / artifact.METADATA_FILE).write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        artifact.load(str(tmp_path))
