"""metrics.jsonl, TensorBoard events and the progress line."""

import json
import os

from smh_jax.training.metrics_writer import MetricsWriter, Progress


def test_writes_jsonl_and_tensorboard(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    writer.write(10, "train", {"loss": 1.5, "accuracy": 0.25})
    writer.write(10, "eval", {"accuracy": 0.5})
    writer.close()
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [(r["step"], r["split"]) for r in records] == [(10, "train"), (10, "eval")]
    assert records[0]["loss"] == 1.5 and records[1]["accuracy"] == 0.5
    assert any(n.startswith("events") for n in os.listdir(tmp_path / "tensorboard"))


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricsWriter(str(tmp_path), enabled=False)
    writer.write(1, "train", {"loss": 1.0})
    writer.close()
    assert os.listdir(tmp_path) == []


def test_progress_line_reports_rate_and_eta():
    progress = Progress(total_steps=100, global_batch=32, start_step=0)
    line, rate = progress.line(10, {"loss": 0.5, "accuracy": 0.75})
    assert line.startswith("step 10/100 | loss 0.5 | accuracy 0.75 | ")
    assert "img/s" in line and "ETA" in line and rate > 0
