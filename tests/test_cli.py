"""train.py and eval.py as a user runs them: subprocesses, real flags, real files.

Each subprocess pays Python/JAX start-up and compilation, so these tests run few, short
jobs; the loop's details are covered in-process by test_trainer.py.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from config_helpers import tiny_flags, xla_flags

from smh_jax.training import cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MOCK_TFDS = os.path.join(ROOT, "tests", "mock_tfds.py")
TINY = tiny_flags()


def run(args, devices=1, env=None, timeout=600):
    """Runs a script of the repo; returns the CompletedProcess (text output)."""
    full_env = {**os.environ, "XLA_FLAGS": xla_flags(devices),
                "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def _ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_quickstart_command_trains_evaluates_and_exports(tmp_path):
    workdir = str(tmp_path / "qs")
    result = _ok(run(["train.py", "--config=configs/quickstart.py", f"--workdir={workdir}",
                      *TINY]))
    # The closing table: accuracy, trainable variables, dense parameter count, fraction.
    for label in ("accuracy (top-1)", "trainable variables", "dense parameters", "fraction"):
        assert label in result.stdout
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["method"] == "smh" and summary["fraction"] == 0.25
    assert summary["steps"] == 4 and summary["trainable_params"] < summary["dense_params"]
    for key in ("model", "dataset", "accuracy", "wall_seconds"):
        assert key in summary

    export_dir = str(tmp_path / "dense")
    result = _ok(run(["eval.py", "--config=configs/quickstart.py", f"--workdir={workdir}",
                      f"--export_dense={export_dir}", *TINY]))
    with open(os.path.join(workdir, "eval.json")) as f:
        evaluation = json.load(f)
    assert evaluation["step"] == 4 and evaluation["accuracy"] == pytest.approx(
        summary["accuracy"])
    assert evaluation["checkpoint_bytes"] > 0
    assert evaluation["trainable_params"] == summary["trainable_params"]
    # The export describes the plain model (test_trainer restores one and compares logits).
    with open(os.path.join(export_dir, "model.json")) as f:
        assert json.load(f)["name"] == "mlp"


@pytest.mark.slow  # minutes of B4 compilation; the default run sizes this config
def test_efficientnet_b4_compressed_to_b0_size_trains_on_mock_imagenet(tmp_path):
    """configs/efficientnet_b4_smh.py's command, with TFDS mocked, at runlocal size (64x64).

    The default run covers its parts faster: test_configs builds and sizes this config,
    test_models trains an EfficientNet step, test_data runs the ImageNet pipeline.
    """
    root = str(tmp_path / "tfds")
    result = _ok(run([MOCK_TFDS, root, "train.py",
                      "--config=configs/efficientnet_b4_smh.py:runlocal",
                      f"--workdir={tmp_path / 'b4'}", f"--config.dataset.data_dir={root}",
                      "--config.num_steps=2", "--config.batch_size=8",
                      "--config.eval_batch_size=8", "--config.checkpoint_every_steps=0"],
                     timeout=900))
    with open(tmp_path / "b4" / "summary.json") as f:
        summary = json.load(f)
    assert summary["model"] == "efficientnet_b4" and summary["steps"] == 2
    # Compressed to B0's size: within one rank (2n = 2 x 4,398) of 5,288,548.
    assert abs(summary["trainable_params"] - 5_288_548) < 2 * 4_398
    assert summary["dense_params"] == 19_341_616
    assert "step 2/2" in result.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    """jax.distributed on localhost: 2 processes x 2 devices == 1 process x 4 devices."""
    common = ["train.py", "--config=configs/quickstart.py", *TINY,
              "--config.checkpoint_every_steps=0", "--config.async_checkpointing=False"]
    single = str(tmp_path / "one")
    _ok(run([*common, f"--workdir={single}"], devices=4))
    double = str(tmp_path / "two")
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": xla_flags(2),
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen(
        [sys.executable, *common, f"--workdir={double}", f"--coordinator_address=localhost:{port}",
         "--num_processes=2", f"--process_id={i}"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    with open(os.path.join(single, "summary.json")) as f:
        one = json.load(f)
    with open(os.path.join(double, "summary.json")) as f:
        two = json.load(f)
    assert one["device"] == two["device"] == "4 x cpu"
    assert two["accuracy"] == pytest.approx(one["accuracy"], abs=1e-6)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    losses = [[json.loads(line)["loss"] for line in open(os.path.join(d, "metrics.jsonl"))
               if '"train"' in line] for d in (single, double)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_error_messages_become_one_readable_line():
    wrapped = AttributeError(KeyError("""'fractoin'\nDid you mean "fraction"?"""))  # ml_collections
    assert cli._one_line(wrapped) == """'fractoin' Did you mean "fraction"?"""
    assert cli._one_line(ValueError("bad value 'a'\nnot 'b'")) == "bad value 'a' not 'b'"
