"""Sweeps (smh_jax.experiments): planning and expansion with matched widths, the presets,
scheduling with a fake train command, collection of fabricated results, the Slurm
script, and one-line user errors."""

import csv
import json
import os
import subprocess
import sys

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from smh_jax.errors import UserError
from smh_jax.experiments import collect, expansion, scheduler, sizing, slurm, sweep_plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.py")
ALL_PRESETS = sorted(os.path.join(ROOT, "configs", "sweeps", n)
                     for n in os.listdir(os.path.join(ROOT, "configs", "sweeps"))
                     if n.endswith(".py"))
# Presets of train.py runs; resident presets (kind="resident") are tested in test_grid.py.
PRESETS = [p for p in ALL_PRESETS
           if sweep_plan.load_preset_config(p)[1].get("kind") != "resident"]


@pytest.fixture(autouse=True)
def _cpu_env(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


@pytest.fixture
def tiny_cifar_npz(tmp_path):
    """CIFAR-shaped arrays: expansion reads the shapes only."""
    path = tmp_path / "cifar.npz"
    images, labels = np.zeros((10, 32, 32, 3), np.uint8), np.arange(10, dtype=np.int64)
    np.savez(path, train_images=images, train_labels=labels, test_images=images,
             test_labels=labels)
    return str(path)


# ----------------------------------------------------------------------------- planning


def test_grid_expands_to_named_sized_runs_with_matched_widths():
    specs = expansion.grid_runs(
        [QUICKSTART], ["num_steps=2"], fractions=(0.25, 0.1), width_fractions=(0.25,),
        seeds=(0, 1), dense=True,
        variants=[("hash2", ("smh.pool=hash", "smh.num_hashes=2", "smh.fraction=0.1"))])
    runs = {r.name: r for r in expansion.expand(specs, ["num_steps=2"])}
    assert list(runs) == [f"resnet20_{g}_s{s}" for g in ("dense", "smh25", "smh10", "width25",
                                                         "hash2") for s in (0, 1)]
    dense = runs["resnet20_dense_s0"]
    assert dense.labels["method"] == "dense" and "smh.fraction=0" in dense.overrides
    assert dense.expected_params == dense.dense_params == 269_434  # ResNet-20, 10 classes
    smh = runs["resnet20_smh25_s1"]
    assert smh.overrides == ["num_steps=2", "smh.fraction=0.25", "seed=1"]
    assert smh.labels == {"model": "resnet20", "method": "smh", "fraction": 0.25,
                          "variant": "", "seed": 1}
    assert smh.command("/r", "python", "train.py") == [
        "python", "train.py", f"--config={QUICKSTART}", "--workdir=/r/resnet20_smh25_s1",
        "--config.num_steps=2", "--config.smh.fraction=0.25", "--config.seed=1"]
    width = runs["resnet20_width25_s1"]
    # Matched to the SMH run of the same fraction, by the one width rule.
    assert width.width_target == smh.expected_params
    expected_width, count = sizing.Sizer().match_width(
        expansion.load_config(QUICKSTART, []), smh.expected_params)
    assert (width.width_multiplier, width.expected_params) == (expected_width, count)
    assert width.overrides[-1] == f"model.width_multiplier={expected_width!r}"
    assert width.labels["method"] == "width" and width.labels["fraction"] == 0.25
    hash2 = runs["resnet20_hash2_s0"]
    assert hash2.labels["variant"] == "hash2" and hash2.labels["fraction"] == 0.1
    assert hash2.labels["method"] == "smh"
    assert hash2.expected_params < runs["resnet20_smh25_s0"].expected_params


def _step_count(thresholds):
    """A non-decreasing step function of the width, like a model's parameter count."""
    def count(width):
        return 100 + sum(int(width >= t) * 37 for t in thresholds) + int(width * 4096) ** 2 // 64
    return count


@hypothesis.given(st.lists(st.floats(0.001, 3.9), max_size=8),
                  st.integers(min_value=50, max_value=1_000_000))
def test_match_width_is_the_closest_grid_width_and_the_narrower_on_ties(thresholds, target):
    count = _step_count(thresholds)
    steps = 64
    grid = [k / steps for k in range(1, 4 * steps + 1)]
    if count(grid[-1]) < target:
        with pytest.raises(UserError, match="fewer than"):
            sizing.match_width(count, target, steps=steps)
        return
    width, got = sizing.match_width(count, target, steps=steps)
    best = min(grid, key=lambda w: (abs(count(w) - target), w))
    assert (width, got) == (best, count(best))


def test_match_width_of_a_real_model_beats_its_neighbours():
    config = expansion.load_config(QUICKSTART, [])
    sizer = sizing.Sizer()
    width, count = sizer.match_width(config, 50_000)
    assert count == sizer.params_at_width(config, width)
    for neighbour in (width - 1 / 1024, width + 1 / 1024):
        assert abs(count - 50_000) <= abs(sizer.params_at_width(config, neighbour) - 50_000)


def test_variant_values_keep_their_commas():
    name, overrides = sweep_plan.parse_variant(
        "mods=smh.modifiers=('scale', 'bias'),--config.smh.fraction=0.1")
    assert name == "mods"
    assert overrides == ("smh.modifiers=('scale', 'bias')", "smh.fraction=0.1")


@pytest.mark.parametrize("call, message", [
    (lambda: sweep_plan.parse_floats("0.25,1.5", "--fractions"), "1.5"),
    (lambda: sweep_plan.parse_floats("a", "--fractions"), "'a'"),
    (lambda: sweep_plan.parse_ints("x", "--seeds"), "--seeds"),
    (lambda: sweep_plan.parse_variant("noequals"), "noequals"),
    (lambda: sweep_plan.parse_override("fraction", "--set"), "KEY=VALUE"),
    (lambda: expansion.load_config(QUICKSTART, ["smh.fractoin=0.1"]), "smh.fractoin"),
    (lambda: expansion.load_config(QUICKSTART, ["smh.pool=nope"]), "nope"),
    (lambda: expansion.load_config(QUICKSTART, ["model.width_multiplier=-1"]),
     "width_multiplier"),
    (lambda: expansion.load_config("configs/nope.py", []), "no such file"),
    (lambda: expansion.grid_runs([], [], (0.1,), (), (0,), True, []), "no --config"),
    (lambda: expansion.expand([sweep_plan.RunSpec("a", QUICKSTART)] * 2), "both named 'a'"),
    (lambda: collect.collect("/nonexistent/sweep"), "no such directory"),
])
def test_bad_sweep_input_is_a_user_error_naming_it(call, message):
    with pytest.raises(UserError, match=message):
        call()


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: os.path.basename(p)[:-3])
def test_every_preset_lists_valid_distinct_runs(path, tiny_cifar_npz):
    sweep = sweep_plan.load_preset(path)
    names = [r.name for r in sweep.runs]
    assert sweep.title and len(names) == len(set(names)) >= 2
    data = ["dataset.source=npz", f"dataset.path={tiny_cifar_npz}"]
    for run in sweep.runs:
        config = expansion.load_config(os.path.join(ROOT, run.config), [*data, *run.overrides])
        assert config.model.name == "resnet32"


def test_the_figure_6_preset_has_the_sizes_its_documentation_gives(tiny_cifar_npz, monkeypatch):
    monkeypatch.chdir(ROOT)  # presets name their train configs relative to the repository
    sweep = sweep_plan.load_preset(os.path.join(ROOT, "configs", "sweeps",
                                                "cifar10_resnet32.py"))
    runs = expansion.expand(sweep.runs, ["dataset.source=npz",
                                         f"dataset.path={tiny_cifar_npz}"])
    sizes = {r.name: (r.expected_params, r.width_multiplier) for r in runs}
    assert sizes == {  # docs/results/cifar10_resnet32.md
        "resnet32_dense_s0": (464_154, 1.0), "resnet32_smh25_s0": (117_905, 1.0),
        "resnet32_smh10_s0": (48_545, 1.0), "resnet32_smh5_s0": (25_425, 1.0),
        "resnet32_width25_s0": (116_882, 0.4921875),
        "resnet32_width10_s0": (49_496, 0.3212890625)}
    assert {r.dense_params for r in runs} == {464_154}
    assert [r.width_target for r in runs[-2:]] == [117_905, 48_545]


def test_a_preset_with_an_unknown_run_field_is_refused(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def get_config(arg=None):\n"
                    "    return {'runs': [{'name': 'a', 'config': 'c.py', 'seeds': [0]}]}\n")
    with pytest.raises(UserError, match=r"bad.runs\[0\].seeds is not a run field"):
        sweep_plan.load_preset(str(path))


# ----------------------------------------------------------------------------- scheduling

# Stands in for train.py: writes summary.json (or fails, or waits for SIGTERM), as the
# scheduler expects of a run; argv: workdir, accuracy, behaviour.
FAKE_TRAIN = r"""
import json, os, signal, sys, time
workdir, accuracy, behaviour = sys.argv[1], float(sys.argv[2]), sys.argv[3]
print("training", workdir, flush=True)
if behaviour == "fail":
    print("error: something went wrong", flush=True)
    sys.exit(2)
if behaviour == "hang":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    while True:
        time.sleep(0.05)
with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"accuracy": accuracy, "method": "smh", "steps": 2}, f)
"""


def _runs(*names):
    return [expansion.Run(name=n, config="c.py", overrides=[], labels={}) for n in names]


def _fake_command(root, behaviour):
    def command(run):
        return [sys.executable, "-c", FAKE_TRAIN, os.path.join(root, run.name), "0.5",
                behaviour.get(run.name, "ok")]
    return command


def test_scheduler_runs_k_at_once_logs_each_run_and_resumes(tmp_path):
    root, lines = str(tmp_path), []
    command = _fake_command(root, {"c": "fail"})
    outcome = scheduler.execute(_runs("a", "b", "c"), root, command, parallel=2, poll=0.05,
                                log=lines.append)
    assert outcome["a"].startswith("done") and outcome["b"].startswith("done")
    assert outcome["c"].startswith("FAILED (exit 2)") and "something went wrong" in outcome["c"]
    for name in "abc":
        log = (tmp_path / name / "log.txt").read_text()
        assert log.startswith("# ") and f"training {os.path.join(root, name)}" in log
    assert sum(line.startswith("[") and " start " in line for line in lines) == 3
    # Again: the finished runs are skipped and their logs untouched; the failed one reruns.
    before = {n: (tmp_path / n / "log.txt").stat().st_size for n in "ab"}
    lines.clear()
    outcome = scheduler.execute(_runs("a", "b", "c"), root, command, parallel=2, poll=0.05,
                                log=lines.append)
    assert outcome["a"] == outcome["b"] == "done before"
    assert before == {n: (tmp_path / n / "log.txt").stat().st_size for n in "ab"}
    assert [line for line in lines if " start " in line] == [
        line for line in lines if line.endswith(")") and "start c" in line]


def test_scheduler_stops_running_runs_at_the_time_limit(tmp_path):
    root = str(tmp_path)
    command = _fake_command(root, {"a": "hang", "b": "hang", "c": "ok"})
    outcome = scheduler.execute(_runs("a", "b", "c"), root, command, parallel=2,
                                time_limit=1.0, grace=10.0, poll=0.05, log=lambda _: None)
    assert outcome["a"].startswith("stopped") and "exit 143" in outcome["a"]
    assert outcome["b"].startswith("stopped") and outcome["c"] == "not started"
    assert not any(scheduler.succeeded(o) for o in outcome.values())


def test_child_env_caps_memory_only_when_runs_share_a_device():
    assert scheduler.child_env({"A": "1"}, 1, None) == {"A": "1"}
    env = scheduler.child_env({}, 4, None)
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.188"


def test_slurm_array_runs_each_run_once_and_is_valid_bash(tmp_path):
    runs = expansion.expand(expansion.grid_runs([QUICKSTART], [], (0.25,), (), (0, 1), True,
                                                []))
    command = lambda r: r.command(str(tmp_path), "python3", "train.py")  # noqa: E731
    script = slurm.emit_slurm(runs, str(tmp_path), command, parallel=3,
                              options=["--time=00:30:00"])
    assert "#SBATCH --array=0-3%3" in script and "#SBATCH --time=00:30:00" in script
    for i, run in enumerate(runs):
        assert f"  {i}) RUN={run.name}; CMD=(python3 train.py " in script
        assert f"--workdir={tmp_path}/{run.name}" in script
    assert 'if [[ -f "$DIR/summary.json" ]]' in script
    path = tmp_path / "array.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    lines = slurm.emit_commands(runs, command).splitlines()
    assert len(lines) == 4 and lines[3].endswith("--config.smh.fraction=0.25 --config.seed=1")


# ----------------------------------------------------------------------------- collection


def _fabricate(root, name, labels, expected, summary=None, evals=(), started=False):
    workdir = root / name
    workdir.mkdir(parents=True)
    expansion.write_json(str(workdir / "sweep_run.json"), {
        "name": name, "labels": labels, "expected_params": expected, "dense_params": 1000,
        "width_multiplier": 1.0})
    if summary is not None:
        expansion.write_json(str(workdir / "summary.json"), summary)
    with open(workdir / "metrics.jsonl", "w") as f:
        for step, accuracy in evals:
            f.write(json.dumps({"step": step, "split": "eval", "accuracy": accuracy}) + "\n")
    if started:
        (workdir / "log.txt").write_text("# started\n")


def _summary(accuracy, trainable=250, wall=10.0):
    return {"accuracy": accuracy, "trainable_params": trainable, "method": "smh",
            "steps": 100, "epochs": 2.0, "wall_seconds": wall, "device": "1 x cpu",
            "fraction": 0.25, "dense_params": 999}


def test_collect_averages_seeds_and_reports_unfinished_runs(tmp_path):
    smh = {"model": "m", "method": "smh", "fraction": 0.25, "variant": ""}
    _fabricate(tmp_path, "smh_s0", {**smh, "seed": 0}, 250, _summary(0.80))
    _fabricate(tmp_path, "smh_s1", {**smh, "seed": 1}, 250, _summary(0.90, wall=20.0))
    _fabricate(tmp_path, "dense_s0", {"model": "m", "method": "dense", "seed": 0}, 1000,
               _summary(0.95, trainable=1000) | {"method": "dense", "fraction": None})
    _fabricate(tmp_path, "lr_s0", {**smh, "seed": 0, "lr": 0.1}, 250, evals=[(50, 0.4)])
    _fabricate(tmp_path, "late_s0", {**smh, "seed": 0}, 250, started=True)
    _fabricate(tmp_path, "never_s0", {**smh, "seed": 0}, 250)
    rows = {r["run"]: r for r in collect.collect(str(tmp_path))}
    assert rows["smh_s0"]["status"] == "complete" and rows["smh_s0"]["accuracy"] == 0.80
    assert rows["smh_s0"]["dense_params"] == 1000  # the sweep's reference wins
    assert rows["smh_s0"]["achieved_fraction"] == 0.25
    assert rows["dense_s0"]["fraction"] == 1.0
    assert rows["lr_s0"]["status"] == "incomplete" and rows["lr_s0"]["accuracy"] == 0.4
    assert rows["lr_s0"]["lr"] == 0.1
    assert rows["late_s0"]["status"] == "stopped" and rows["never_s0"]["status"] == "not run"
    groups = collect.group_rows(list(rows.values()))
    assert groups[("m", "smh", "", 0.25, ())] == pytest.approx({
        "n": 2, "accuracy": 0.85, "min": 0.80, "max": 0.90, "trainable_params": 250,
        "wall_seconds": 15.0})
    assert ("m", "dense", "", None, ()) in groups and len(groups) == 2

    paths = collect.write_results(str(tmp_path), str(tmp_path / "out"), "tiny")
    with open(paths["csv"], encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and table[0].keys() >= set(collect.CSV_COLUMNS) | {"lr"}
    markdown = open(paths["md"], encoding="utf-8").read()
    assert "| smh_s0 | smh | 0.25 | 250 |" in markdown
    assert "| m | smh | 0.25 | 250 | 2 | 85.00 (80.00 - 90.00) |" in markdown
    assert "| lr_s0 | smh (lr=0.1) |" in markdown and "incomplete (step 50)" in markdown
    assert "Not complete (3): late_s0, lr_s0, never_s0" in markdown
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in open(paths["svg"], encoding="utf-8").read()


def test_the_plan_on_disk_names_every_run_and_its_command(tmp_path):
    runs = _runs("a", "b")
    commands = [["python", "train.py", f"--workdir={tmp_path}/{r.name}"] for r in runs]
    expansion.write_plan(str(tmp_path), runs, commands, title="t",
                         references=[sweep_plan.Reference("paper", 1e5, 90.0)], preset="p")
    plan = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["name"] for r in plan["runs"]] == ["a", "b"] and plan["preset"] == "p"
    assert plan["references"][0]["label"] == "paper"
    record = json.loads((tmp_path / "b" / "sweep_run.json").read_text())
    assert record["command"] == f"python train.py --workdir={tmp_path}/b"


# ----------------------------------------------------------------------------- the script


def test_sweep_script_prints_the_plan_and_refuses_bad_flags_in_one_line(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    script = os.path.join(ROOT, "scripts", "sweep.py")
    ok = subprocess.run([sys.executable, script, f"--config={QUICKSTART}", "--fractions=0.25",
                         f"--root={tmp_path}", "--emit=commands", "--no-dense"],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith("--config.smh.fraction=0.25 --config.seed=0")
    assert "resnet20_smh25_s0" in ok.stderr  # the plan
    bad = subprocess.run([sys.executable, script, "--preset=cifar10_resnet32",
                          f"--root={tmp_path}", "--fractions=0.1"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --preset lists its own runs")
    assert bad.stderr.count("\n") == 1
