"""scripts/benchmark.py: its JSON holds measured figures and ratios derived from them."""

import importlib.util
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smh_jax
from smh_jax import models

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                     "benchmark.py")
_spec = importlib.util.spec_from_file_location("smh_benchmark_script", _PATH)
benchmark = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = benchmark  # dataclasses look their module up there
_spec.loader.exec_module(benchmark)


def _count(module, shape):
    return benchmark.count_params(benchmark.abstract_params(module, shape))


def test_small_run_writes_measured_figures_and_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = benchmark.main(["--preset", "resnet32_cifar", "--small", "--model", "resnet20",
                         "--variants", "dense,smh", "--repetitions", "4", "--warmup", "1",
                         "--compile_threads", "2", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["model"] == "resnet20" and result["batch"] == 4 and result["small"]
    assert result["dtype"] == "float32" and result["platform"] == "cpu"
    assert result["jax_version"] == jax.__version__ and result["repetitions"] == 4
    assert [v["name"] for v in result["variants"]] == ["dense", "smh"]

    # Sizes: the dense model's parameters; SMH's trainable count is the size matched to.
    shape = (1, 8, 8, 3)
    base = models.create("resnet20", num_classes=10)
    dense, smh = result["variants"]
    assert dense["trainable_params"] == _count(base, shape)
    smh_params = benchmark.abstract_params(smh_jax.compress(base, fraction=0.1), shape)
    assert smh["trainable_params"] == smh_jax.accounting(
        smh_jax.smh_params_of(smh_params))["trainable"]
    assert result["size"]["matched_trainable_params"] == smh["trainable_params"]

    # Every figure is computed from the samples the run took.
    for v in result["variants"]:
        samples = np.asarray(v["ms_samples"])
        assert len(samples) == 4 and (samples > 0).all()
        assert v["step_ms_median"] == pytest.approx(np.median(samples))
        assert v["ms"]["p10"] == pytest.approx(np.percentile(samples, 10))
        assert v["ms"]["p90"] == pytest.approx(np.percentile(samples, 90))
        assert v["ratio_to_dense"] == pytest.approx(
            np.median(samples) / np.median(dense["ms_samples"]))
        assert v["ratio_of_min_to_dense"] == pytest.approx(
            samples.min() / np.min(dense["ms_samples"]))
        paired = samples / np.asarray(dense["ms_samples"])
        assert v["ratio_paired"]["median"] == pytest.approx(np.median(paired))
        assert v["images_per_second"] == pytest.approx(4 / (np.median(samples) / 1e3))
        memory = v["memory_bytes"]
        assert memory["peak"] == (memory["argument"] + memory["output"] - memory["alias"]
                                  + memory["temp"]) > 0
    assert dense["ratio_to_dense"] == 1.0
    assert result["checks"]["smh/dense"] == pytest.approx(smh["ratio_to_dense"])

    # Materialization (forward, and forward + backward) and inference, also measured.
    assert [m["name"] for m in result["materialize"]] == ["smh", "smh+grad"]
    assert [m["name"] for m in result["inference"]] == [
        "dense", "smh materialized", "smh on the fly"]
    reference = np.median(result["inference"][0]["ms_samples"])
    for row in result["materialize"] + result["inference"]:
        assert row["ms_median"] == pytest.approx(np.median(row["ms_samples"]))
        assert row["ms_median"] > 0
    for row in result["inference"]:
        assert row["ratio_to_dense"] == pytest.approx(np.median(row["ms_samples"]) / reference)
    assert "smh/dense" in printed and "smh materialized" in printed


def test_width_search_finds_the_closest_count():
    shape = (1, 8, 8, 3)
    target = 30_000
    width, count = benchmark.width_for("resnet20", 10, jnp.float32, shape, target)
    assert count == _count(models.create("resnet20", num_classes=10, width_multiplier=width),
                           shape)
    # Counts grow with the width; no width on either side of the result comes closer.
    for other in (width - 0.02, width + 0.02, 0.25, 0.5):
        other_count = _count(models.create("resnet20", num_classes=10,
                                           width_multiplier=other), shape)
        assert abs(count - target) <= abs(other_count - target)


@pytest.mark.parametrize("argv,message", [
    (["--preset", "vgg"], "--preset: 'vgg' is not one of resnet32_cifar"),
    (["--variants", "dense,hash0"], "--variants: 'hash0' is not one of"),
    (["--variants", "smh,smh"], "lists a variant twice"),
    (["--extras", "profile"], "--extras: 'profile' is not one of"),
    (["--dtype", "int8"], "--dtype: 'int8' is not one of"),
    (["--calls_per_sample", "0"], "--calls_per_sample: 0 must be >= 1"),
    (["--model", "vgg16"], "unknown model 'vgg16'"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert benchmark.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
