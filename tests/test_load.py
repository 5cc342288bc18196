"""Load: 2,000 steps with a checkpoint every 50 keep host memory flat and the disk bounded.

One real `train.py` run (1 CPU device, SMH ResNet-20 at width 0.25 on the 8x8 digits).
While it runs, the test samples the process's resident set (VmRSS from /proc/PID/status),
the step it has reached (the last line of metrics.jsonl) and the checkpoint directory.
The figures are printed (`pytest -s tests/test_load.py`) and quoted in docs/reliability.md.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from config_helpers import RESNET8, tiny_flags

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
STEPS, EVERY, KEEP = 2000, 50, 3
# Host memory may grow this much between the early and the late window. Measured
# (docs/reliability.md): about +15-20 MB over the 36 checkpoints between them and none
# at all without checkpoints; Orbax/TensorStore keep roughly 0.2-0.5 MB per save (part
# TensorStore's Python bindings, part allocator retention). A leak of 21 KB per step
# (e.g. kept metrics) or 1 MB per checkpoint would exceed it.
RSS_TOLERANCE_MB = 40.0
# The tiny run at the quickstart's own ResNet-20 (the figures in docs/reliability.md).
COMMAND = ["train.py", "--config=configs/quickstart.py", *tiny_flags(
    **{**RESNET8, "model.name": "resnet20"}, num_steps=STEPS, log_every_steps=EVERY,
    checkpoint_every_steps=EVERY, keep_checkpoints=KEEP)]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def last_step(path: str) -> int:
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue  # a line being written
    return 0


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_2000_steps_keep_memory_flat_and_at_most_keep_checkpoints(tmp_path):
    workdir = str(tmp_path / "load")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.time()
    proc = subprocess.Popen([sys.executable, *COMMAND, f"--workdir={workdir}"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    checkpoints = os.path.join(workdir, "checkpoints")
    samples = []  # (step reached, RSS MB)
    most_complete = 0
    try:
        while proc.poll() is None:
            try:
                rss = rss_mb(proc.pid)
            except (FileNotFoundError, ProcessLookupError, AssertionError):
                break  # exited between poll() and the read
            samples.append((last_step(metrics), rss))
            if os.path.isdir(checkpoints):
                complete = [n for n in os.listdir(checkpoints) if n.isdigit()]
                most_complete = max(most_complete, len(complete))
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    wall = time.time() - start
    assert proc.returncode == 0, stderr[-3000:]

    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["steps"] == STEPS
    final = sorted(int(n) for n in os.listdir(checkpoints))
    assert final == [STEPS - EVERY * i for i in reversed(range(KEEP))]  # no leftovers either
    # Orbax deletes the oldest step only after the new one is committed (never fewer than
    # KEEP complete checkpoints), so for a moment KEEP + 1 can exist; never more.
    assert most_complete <= KEEP + 1

    early = [rss for step, rss in samples if 2 * EVERY <= step < 4 * EVERY]
    late = [rss for step, rss in samples if STEPS - 2 * EVERY <= step < STEPS]
    assert early and late, f"too few samples: {len(samples)}"
    start_mb, end_mb = max(early), max(late)
    print(f"\nload: {STEPS} steps, checkpoint every {EVERY}, keep {KEEP}: RSS {start_mb:.1f} MB "
          f"(steps {2 * EVERY}-{4 * EVERY}) -> {end_mb:.1f} MB (steps {STEPS - 2 * EVERY}-"
          f"{STEPS}), growth {end_mb - start_mb:+.1f} MB; peak RSS {max(r for _, r in samples):.1f}"
          f" MB; at most {most_complete} complete checkpoints on disk; {len(samples)} samples; "
          f"{wall:.0f} s wall")
    assert end_mb - start_mb <= RSS_TOLERANCE_MB, (start_mb, end_mb)
