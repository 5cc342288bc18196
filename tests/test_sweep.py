"""scripts/sweep.py: expansion and matched widths, two tiny real runs at once, resume,
collection into CSV/Markdown/plots, the Slurm array script, and one-line user errors."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("sweep", os.path.join(REPO, "scripts", "sweep.py"))
sweep = importlib.util.module_from_spec(_spec)
sys.modules["sweep"] = sweep  # dataclasses look their module up
_spec.loader.exec_module(sweep)

QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
# Two steps of a quarter-width ResNet-20 on the 8x8 digits: seconds per run.
TINY = ["num_steps=2", "model.width_multiplier=0.25", "batch_size=32", "eval_batch_size=360",
        "log_every_steps=1", "checkpoint_every_steps=0", "async_checkpointing=False"]


@pytest.fixture(autouse=True)
def _cpu_env(monkeypatch):
    # main() pins its own process to the CPU; keep that (and one device for the child
    # runs, not conftest's eight) local to each test.
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")


def test_expand_names_overrides_and_matched_widths():
    spec = sweep.Spec(
        configs=(QUICKSTART,), fractions=(0.25, 0.1), width_fractions=(0.25,),
        seeds=(0, 1), dense=True, sets=("num_steps=2",),
        variants=(("hash2", ("smh.pool=hash", "smh.num_hashes=2", "smh.fraction=0.1")),))
    runs = sweep.expand(spec)
    by_name = {r.name: r for r in runs}
    assert list(by_name) == [
        f"resnet20_{g}_s{s}" for g in ("dense", "smh25", "smh10", "width25", "hash2")
        for s in (0, 1)]
    dense = by_name["resnet20_dense_s0"]
    assert dense.method == "dense" and "smh.fraction=0" in dense.overrides
    assert dense.expected_params == dense.dense_params == 269_434  # ResNet-20, 10 classes
    smh = by_name["resnet20_smh25_s1"]
    assert smh.overrides == ["num_steps=2", "smh.fraction=0.25", "seed=1"]
    cmd = smh.command("/r", "python")
    assert cmd[1:] == [os.path.join(REPO, "train.py"), f"--config={QUICKSTART}",
                       "--workdir=/r/resnet20_smh25_s1", "--config.num_steps=2",
                       "--config.smh.fraction=0.25", "--config.seed=1"]
    width = by_name["resnet20_width25_s1"]
    # Matched to the SMH run of the same fraction, within a few percent.
    assert width.width_target == smh.expected_params
    assert abs(width.expected_params - width.width_target) <= 0.03 * width.width_target
    assert 0 < width.width_multiplier < 1
    assert f"model.width_multiplier={width.width_multiplier!r}" in width.overrides
    hash2 = by_name["resnet20_hash2_s0"]
    assert hash2.variant == "hash2" and hash2.fraction == 0.1
    assert hash2.overrides[-4:] == ["smh.pool=hash", "smh.num_hashes=2", "smh.fraction=0.1",
                                    "seed=0"]
    assert hash2.expected_params < by_name["resnet20_smh25_s0"].expected_params


def test_match_width_is_the_closest_count():
    sizes = sweep.Sizes()
    config = sweep.load_config(QUICKSTART, [])
    for target in (20_000, 100_000):
        width, count = sizes.match_width(config, target, steps=64)
        assert count == sizes.width_count(config, width)
        neighbours = [sizes.width_count(config, width + d / 64) for d in (-1, 1)]
        assert all(abs(count - target) <= abs(n - target) for n in neighbours)


def test_variant_values_keep_their_commas():
    name, overrides = sweep.parse_variant(
        "mods=smh.modifiers=('scale', 'bias'),--config.smh.fraction=0.1")
    assert name == "mods"
    assert overrides == ["smh.modifiers=('scale', 'bias')", "smh.fraction=0.1"]


def _read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_two_tiny_runs_at_once_resume_and_collect(tmp_path, capsys):
    root = str(tmp_path / "sweep")
    argv = [f"--config={QUICKSTART}", "--fractions=0.25", "--width_fractions=0.25",
            "--no-dense", f"--root={root}", "--parallel=2", *(f"--set={s}" for s in TINY)]
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    names = ["resnet20_smh25_s0", "resnet20_width25_s0"]
    summaries = {}
    for name in names:
        assert f"start {name}" in out
        with open(os.path.join(root, name, "summary.json"), encoding="utf-8") as f:
            summaries[name] = json.load(f)
        with open(os.path.join(root, name, "log.txt"), encoding="utf-8") as f:
            log = f.read()
        assert log.startswith("# ") and f"--workdir={os.path.join(root, name)}" in log
        assert "final eval" in log
    assert summaries["resnet20_smh25_s0"]["method"] == "smh"
    assert summaries["resnet20_width25_s0"]["method"] == "width"

    rows = _read_csv(os.path.join(root, "results.csv"))
    assert [r["run"] for r in rows] == names
    for row in rows:
        s = summaries[row["run"]]
        assert row["status"] == "complete"
        assert float(row["accuracy"]) == pytest.approx(s["accuracy"])
        assert int(row["trainable_params"]) == s["trainable_params"]
        assert int(row["steps"]) == s["steps"] == 2
        assert row["method"] == s["method"] and row["fraction"] == "0.25"
        assert float(row["wall_seconds"]) == pytest.approx(s["wall_seconds"])
        assert row["device"] == s["device"]
    with open(os.path.join(root, "results.md"), encoding="utf-8") as f:
        table = f.read()
    for name in names:
        assert f"| {name} |" in table
    with open(os.path.join(root, "results.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(root, "results.svg"), encoding="utf-8") as f:
        assert "<svg" in f.read()

    # Rerunning resumes: both runs are done, nothing starts, the logs are untouched.
    sizes = {n: os.path.getsize(os.path.join(root, n, "log.txt")) for n in names}
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "start " not in out and out.count("summary.json exists") == 2
    assert sizes == {n: os.path.getsize(os.path.join(root, n, "log.txt")) for n in names}

    # Collecting again elsewhere, under another name, reads the same runs.
    out_dir = str(tmp_path / "results")
    assert sweep.main([f"--root={root}", "--collect_only", f"--out_dir={out_dir}",
                       "--name=tiny"]) == 0
    assert sorted(os.listdir(out_dir)) == ["tiny.csv", "tiny.md", "tiny.png", "tiny.svg"]
    assert _read_csv(os.path.join(out_dir, "tiny.csv")) == rows


def test_emit_slurm_and_commands(tmp_path, capsys):
    root = str(tmp_path / "r")
    argv = [f"--config={QUICKSTART}", "--fractions=0.25", "--seeds=0,1", f"--root={root}",
            "--set=num_steps=2", "--python=python3"]
    assert sweep.main([*argv, "--emit=slurm", "--parallel=3",
                       "--slurm_option=--time=00:30:00"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-3%3" in script and "#SBATCH --time=00:30:00" in script
    names = ["resnet20_dense_s0", "resnet20_dense_s1", "resnet20_smh25_s0", "resnet20_smh25_s1"]
    for i, name in enumerate(names):
        assert f"  {i}) RUN={name}; CMD=(python3 " in script
        assert f"--workdir={root}/{name}" in script
    assert 'if [[ -f "$DIR/summary.json" ]]' in script
    path = tmp_path / "array.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)  # valid bash
    assert os.path.isfile(os.path.join(root, "resnet20_smh25_s1", "sweep_run.json"))
    with open(os.path.join(root, "sweep.json"), encoding="utf-8") as f:
        assert [r["name"] for r in json.load(f)["runs"]] == names

    assert sweep.main([*argv, "--emit=commands"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("python3 ") for line in lines)
    assert lines[3].endswith("--config.num_steps=2 --config.smh.fraction=0.25 --config.seed=1")


@pytest.mark.parametrize("args, message", [
    (["--set=smh.fractoin=0.1"], "smh.fractoin"),
    (["--fractions=0.25,1.5"], "1.5"),
    (["--fractions=a"], "'a'"),
    (["--seeds=x"], "--seeds"),
    (["--variant=noequals"], "noequals"),
    (["--variant=v=smh.pool=nope"], "nope"),
    (["--variant=v=smh.fraction=0.1", "--variant=v=smh.fraction=0.2"], "repeat"),
    (["--parallel=0"], "--parallel"),
    (["--set=model.width_multiplier=-1"], "width_multiplier"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    code = sweep.main([f"--config={QUICKSTART}", f"--root={tmp_path}", "--emit=commands",
                       *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and message in err


def test_missing_config_and_empty_root(tmp_path, capsys):
    assert sweep.main(["--config=configs/nope.py", f"--root={tmp_path}"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert sweep.main([f"--root={tmp_path / 'none'}", "--collect_only"]) == 2
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse mistakes exit 2 too
        sweep.main(["--root=x", "--emit=yaml"])
    assert e.value.code == 2


@pytest.mark.parametrize("preset", sorted(sweep.PRESETS))
def test_every_preset_expands_to_runs_of_the_size_it_promises(preset, tmp_path):
    # The presets read data_local/cifar10_jpeg.npz (copied there for the GPU); a clean
    # checkout lacks it, so a tiny CIFAR-shaped npz stands in (expansion reads its shapes).
    npz = tmp_path / "cifar.npz"
    images, labels = np.zeros((10, 32, 32, 3), np.uint8), np.arange(10, dtype=np.int64)
    np.savez(npz, train_images=images, train_labels=labels, test_images=images,
             test_labels=labels)
    args = sweep.build_parser().parse_args([f"--preset={preset}", "--root=/unused",
                                            "--set", f"dataset.path={npz}"])
    runs = sweep.expand(sweep.make_spec(args))  # shapes only (jax.eval_shape), no data read
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) >= 2
    for run in runs:
        assert 0 < run.expected_params <= run.dense_params == 464_154  # ResNet-32, 10 classes
        if run.fraction is not None and run.method != "width":
            # Every pool gets the fraction of the 461,882 hashed weights, rounded up to a
            # whole unit (rank, replica, variable), plus 2,272 BatchNorm parameters and
            # 33 scales.
            hashed = run.expected_params - 2_272 - 33
            assert run.fraction * 461_882 <= hashed < run.fraction * 461_882 + 2 * 680 * 1.01
    if preset == "cifar10_resnet32_table1":
        assert names == ["resnet32_smh10_s0", "resnet32_kronecker_s0", "resnet32_hash1_s0",
                         "resnet32_hash2_s0", "resnet32_hash10_s0"]
        assert [r.expected_params for r in runs] == [48_545, 48_961, 48_494, 48_494, 48_494]
