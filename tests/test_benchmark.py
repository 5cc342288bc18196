"""The benchmarks (smh_jax.experiments): interleaved timing, statistics and ratios on
synthetic samples, memory accounting, one real pipeline on a tiny model, bad options."""

import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smh_jax
from smh_jax.errors import UserError
from smh_jax.experiments import benchmark, benchmark_report, inference_memory, timing
from smh_jax.training.preemption import SigtermFlag


def _synthetic(group, name, samples):
    return timing.Measurement(group, name, (), samples=list(samples))


# ----------------------------------------------------------------------------- timing


def test_each_round_runs_every_measurement_once_in_a_fresh_random_order():
    calls = []
    measurements = [timing.Measurement("g", n, (n,), compiled=calls.append) for n in "abcd"]
    rounds = timing.time_interleaved(measurements, warmup=1, repetitions=12,
                                     log=lambda _: None)
    assert rounds == 12 and all(len(m.samples) == 12 for m in measurements)
    warm, timed = calls[:4], calls[4:]
    assert warm == list("abcd")
    orders = ["".join(timed[i:i + 4]) for i in range(0, len(timed), 4)]
    assert all(sorted(o) == list("abcd") for o in orders)
    # Not a fixed or rotated order: some measurement follows different ones across rounds.
    rotations = {"abcd"[i:] + "abcd"[:i] for i in range(4)}
    assert not set(orders) <= rotations
    predecessors = {o[o.index("a") - 1] for o in orders if o[0] != "a"}
    assert len(predecessors) > 1


def test_a_sigterm_keeps_only_complete_rounds():
    count = {"n": 0}

    def work(_):
        count["n"] += 1
        if count["n"] == 3 + 3 * 2 + 1:  # 3 warm-ups, 2 full rounds, then mid-round
            os.kill(os.getpid(), signal.SIGTERM)

    measurements = [timing.Measurement("g", n, (n,), compiled=work) for n in "xyz"]
    previous = signal.getsignal(signal.SIGTERM)
    rounds = timing.time_interleaved(measurements, warmup=1, repetitions=10,
                                     log=lambda _: None)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored
    assert rounds == 2 and [len(m.samples) for m in measurements] == [2, 2, 2]


def test_sigterm_flag_defers_to_a_sync_point_when_given():
    asked = []
    flag = SigtermFlag(sync_point=lambda step: asked.append(step) or step == 7)
    with flag:
        assert not flag.reached(3) and flag.reached(7) and asked == [3, 7]
    with SigtermFlag() as own:
        assert not own.reached()
        os.kill(os.getpid(), signal.SIGTERM)
        assert own.reached() and own.requested


def test_a_time_budget_cuts_the_repetitions_to_what_fits():
    import time

    def slow(_):
        time.sleep(0.02)

    measurements = [timing.Measurement("g", "s", (0,), compiled=slow)]
    lines = []
    rounds = timing.time_interleaved(measurements, warmup=1, repetitions=1000,
                                     deadline=time.perf_counter() + 0.2, log=lines.append)
    assert 1 <= rounds < 20 and any("time budget" in line for line in lines)


# ----------------------------------------------------------------------------- statistics


def test_statistics_and_ratios_come_from_the_samples():
    rng = np.random.default_rng(0)
    dense = rng.uniform(0.9, 1.1, 25)
    smh = dense * rng.uniform(1.0, 1.1, 25)
    measurements = [_synthetic("train", "dense", dense), _synthetic("train", "smh", smh),
                    _synthetic("materialize", "smh", smh / 10)]
    rows = benchmark_report.group_report(measurements, "train", "dense", batch=8)
    by_name = {r["name"]: r for r in rows}
    row, ms = by_name["smh"], smh * 1e3
    assert row["ms_median"] == pytest.approx(np.median(ms))
    assert row["ms"]["p10"] == pytest.approx(np.percentile(ms, 10))
    assert row["ms"]["p90"] == pytest.approx(np.percentile(ms, 90))
    assert row["ms"]["min"] == pytest.approx(ms.min())
    assert row["ratio_to_dense"] == pytest.approx(np.median(smh) / np.median(dense))
    assert row["ratio_of_min_to_dense"] == pytest.approx(smh.min() / dense.min())
    assert row["ratio_paired"]["median"] == pytest.approx(np.median(smh / dense))
    assert row["ratio_paired"]["p10"] == pytest.approx(np.percentile(smh / dense, 10))
    assert row["images_per_second"] == pytest.approx(8 / np.median(smh))
    assert by_name["dense"]["ratio_to_dense"] == 1.0
    materialize = benchmark_report.group_report(measurements, "materialize", None, batch=8)
    assert "ratio_to_dense" not in materialize[0] and "images_per_second" not in materialize[0]

    for r in rows:
        r.update(step_ms_median=r["ms_median"], trainable_params=10)
    inference = [{"name": "smh materialized", "ratio_to_dense": 1.01}]
    ratios = benchmark_report.key_ratios(rows, inference)
    assert ratios["smh/dense"] == pytest.approx(row["ratio_to_dense"])
    assert ratios["inference materialized/dense"] == 1.01


def test_memory_is_arguments_plus_outputs_minus_aliases_plus_temporaries():
    step = jax.jit(lambda x, y: (x * 2.0, jnp.tanh(y @ y.T).sum()), donate_argnums=0)
    x, y = jnp.ones((256, 256)), jnp.ones((64, 32))
    memory = timing.memory_bytes(step.lower(x, y).compile())
    assert memory["argument"] == 4 * (256 * 256 + 64 * 32)
    assert memory["peak"] == (memory["argument"] + memory["output"] - memory["alias"]
                              + memory["temp"])
    assert memory["alias"] == 4 * 256 * 256  # the donated input is reused for x * 2


# ----------------------------------------------------------------------------- a real run


class _TinyCNN(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train):
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(8, (3, 3))(x)))
        return nn.Dense(self.num_classes)(x.mean((1, 2)))


def test_train_steps_materialization_and_inference_are_measured_and_reported():
    base = _TinyCNN()
    variants = [benchmark.Variant("dense", base, {"kind": "dense"}),
                benchmark.Variant("smh", smh_jax.compress(base, fraction=0.5),
                                  {"kind": "smh"})]
    measurements = benchmark.prepare(variants, (4, 8, 8, 3), "float32",
                                     ("materialize", "inference"))
    timing.compile_all(measurements, threads=2)
    assert timing.time_interleaved(measurements, 1, 3, log=lambda _: None) == 3
    names = [(m.group, m.name) for m in measurements]
    assert names == [("train", "dense"), ("train", "smh"), ("materialize", "smh"),
                     ("materialize", "smh+grad"), ("inference", "dense"),
                     ("inference", "smh materialized"), ("inference", "smh on the fly")]
    # The materialized model runs the very executable the dense model runs.
    inference = {m.name: m for m in measurements if m.group == "inference"}
    assert inference["smh materialized"].compiled is inference["dense"].compiled
    assert variants[1].trainable_params < variants[0].trainable_params
    train = benchmark_report.group_report(measurements, "train", "dense", batch=4)
    for row, v in zip(train, variants, strict=True):
        row.update(trainable_params=v.trainable_params, step_ms_median=row["ms_median"])
    result = {"preset": "tiny", "model": "cnn", "image_size": 8, "batch": 4,
              "dtype": "float32", "smh_dtype": "float32", "device_count": 1, "device": "cpu",
              "jax_version": jax.__version__, "repetitions": 3, "git_commit": None,
              "variants": train, "inference": benchmark_report.group_report(
                  measurements, "inference", "dense", 4),
              "materialize": benchmark_report.group_report(measurements, "materialize",
                                                           None, 4),
              "ratios": {"smh/dense": train[1]["ratio_to_dense"]}}
    table = benchmark_report.format_table(result)
    assert "smh materialized" in table and "ratios: smh/dense" in table


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("call, message", [
    (lambda: benchmark.resolve(benchmark.Options(preset="vgg"), "cpu"),
     "--preset: 'vgg' is not one of resnet32_cifar"),
    (lambda: benchmark.variant_names("dense,hash0"), "--variants: 'hash0' is not one of"),
    (lambda: benchmark.variant_names("smh,smh"), "lists a variant twice"),
    (lambda: benchmark.extra_names("profile"), "--extras: 'profile' is not one of"),
    (lambda: benchmark.resolve(benchmark.Options(dtype="int8"), "cpu"),
     "--dtype: 'int8' is not one of"),
    (lambda: benchmark.resolve(benchmark.Options(calls_per_sample=0), "cpu"),
     "--calls_per_sample: 0 must be >= 1"),
    (lambda: benchmark.resolve(benchmark.Options(model="vgg16"), "cpu"),
     "unknown model 'vgg16'"),
    (lambda: benchmark.resolve(benchmark.Options(fraction=1.5), "cpu"),
     r"--fraction: 1.5 is outside \(0, 1\]"),
    (lambda: inference_memory.parse_models("resnet50:fraction"), "must be NAME:fraction=F"),
    (lambda: inference_memory.parse_models("vgg:fraction=0.1"), "not a known model"),
])
def test_bad_benchmark_options_are_user_errors_naming_them(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_small_preset_and_auto_dtype():
    preset, dtype, smh_dtype, repetitions = benchmark.resolve(
        benchmark.Options(small=True, model="resnet20"), "cpu")
    assert (preset.batch, preset.image_size, preset.model) == (4, 8, "resnet20")
    assert (dtype, smh_dtype, repetitions) == ("float32", "float32", 3)
    assert benchmark.resolve(benchmark.Options(), "gpu")[1] == "bfloat16"
    sized = benchmark.resolve(benchmark.Options(preset="efficientnet_b4", fraction=0.1), "cpu")[0]
    assert (sized.fraction, sized.target_params) == (0.1, None)
