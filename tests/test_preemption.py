"""Preemption: `train.py` killed (SIGKILL) at random points and stopped by SIGTERM, restarted
with the same command each time, ends bitwise identical to a run that was never interrupted.

One workdir goes through: SIGKILL at a random step; SIGKILL while an asynchronous
checkpoint save is in flight (its temporary directory is on disk); SIGTERM (a preemption
notice: final checkpoint, exit status 143); a last run that finishes. Each restart must
resume from the newest checkpoint that was complete when the process died, and the final
parameters, every logged loss and the final metrics must equal those of an uninterrupted
run with the same seed that runs alongside. The kill points are drawn at random; the seed
is in every failure message (rerun with SMH_KILL_SEED=<seed>).

Tiny on purpose (the tests' 64-32-10 MLP on the 8x8 digits, 1 CPU device, 120 steps, a
checkpoint every 2 steps) and sharing one persistent compilation cache, so a restart costs
about a Python start-up.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from config_helpers import tiny_config, tiny_flags, xla_flags

from smh_jax.training import checkpointing, trainer

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
STEPS = 120
OVERRIDES = {"num_steps": STEPS, "checkpoint_every_steps": 2, "keep_checkpoints": 3}
COMMAND = ["train.py", "--config=configs/quickstart.py", *tiny_flags(**OVERRIDES)]
RESUMED = re.compile(r"resumed from .* at step (\d+)")


def quickstart_config():
    return tiny_config(**OVERRIDES)


class Job:
    """One `train.py` process with the shared command; output goes to a log file."""

    def __init__(self, workdir, log, cache):
        env = {**os.environ, "XLA_FLAGS": xla_flags(1),
               "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
               "JAX_COMPILATION_CACHE_DIR": cache,
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
        self.workdir, self.log = workdir, log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, *COMMAND, f"--workdir={workdir}"],
                                         cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def wait_for(self, condition, what, timeout=300.0):
        """Polls `condition` about every millisecond while the process runs."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.001)
        raise AssertionError(f"{what}: not seen (exit {self.proc.poll()}):\n"
                             f"{self.output()[-3000:]}")

    def finish(self, timeout=600):
        return self.proc.wait(timeout=timeout)


def logged_steps(workdir):
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return [json.loads(line)["step"] for line in f if '"train"' in line]
    except FileNotFoundError:
        return []


def checkpoint_dirs(workdir):
    """(complete steps, names of temporary directories of saves in flight)."""
    try:
        names = os.listdir(os.path.join(workdir, "checkpoints"))
    except FileNotFoundError:
        return [], []
    return (sorted(int(n) for n in names if n.isdigit()),
            sorted(n for n in names if checkpointing.TMP_DIR_SUFFIX in n))


def assert_resumed_from(job, step, seed):
    found = RESUMED.findall(job.output())
    if step is None:
        assert not found, f"seed {seed}: resumed although no checkpoint was complete"
    else:
        assert found == [str(step)], f"seed {seed}: expected a resume from {step}, got {found}"


def test_killed_and_preempted_runs_resume_and_finish_bitwise_identical(tmp_path):
    seed = int(os.environ.get("SMH_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    cache = str(tmp_path / "jax_cache")
    workdir, reference_dir = str(tmp_path / "interrupted"), str(tmp_path / "reference")
    reference = Job(reference_dir, str(tmp_path / "reference.log"), cache)
    log = iter(str(tmp_path / f"run{i}.log") for i in range(10))

    # 1. SIGKILL at a random step (during training, between or during saves).
    kill_at = rng.randint(3, 15)
    job = Job(workdir, next(log), cache)
    job.wait_for(lambda: max(logged_steps(workdir), default=0) >= kill_at, f"step {kill_at}")
    job.proc.send_signal(signal.SIGKILL)
    assert job.finish() == -signal.SIGKILL
    complete, _ = checkpoint_dirs(workdir)
    resume = max(complete, default=None)

    # 2. SIGKILL while a save is in flight: once this run has trained a step (so it has
    # removed any leftover of the last kill), as soon as a temporary directory appears. The
    # save may still win the race to its rename; then try again (each attempt must resume
    # correctly too).
    attempts = 0
    while attempts < 4:
        attempts += 1
        lines_before = len(logged_steps(workdir))
        job = Job(workdir, next(log), cache)
        job.wait_for(lambda n=lines_before: len(logged_steps(workdir)) > n, "a trained step")
        job.wait_for(lambda: checkpoint_dirs(workdir)[1], f"seed {seed}: a save in flight")
        job.proc.send_signal(signal.SIGKILL)
        assert job.finish() == -signal.SIGKILL
        assert_resumed_from(job, resume, seed)
        complete, partial = checkpoint_dirs(workdir)
        resume = max(complete, default=None)
        if partial:
            break
    assert partial, f"seed {seed}: no kill landed inside a save in {attempts} attempts"

    # 3. SIGTERM (preemption notice) a few steps later: checkpoint, exit 143.
    lines_before = len(logged_steps(workdir))
    job = Job(workdir, next(log), cache)
    term_at = (resume or 0) + rng.randint(2, 6)
    job.wait_for(lambda: max(logged_steps(workdir)[lines_before:], default=0) >= term_at,
                 f"step {term_at}")
    job.proc.send_signal(signal.SIGTERM)
    assert job.finish() == 143, f"seed {seed}:\n{job.output()[-3000:]}"
    assert_resumed_from(job, resume, seed)
    saved = re.findall(r"preempted: SIGTERM: saved a checkpoint at step (\d+)", job.output())
    assert len(saved) == 1, job.output()[-3000:]
    stopped = int(saved[0])
    complete, partial = checkpoint_dirs(workdir)
    assert max(complete) == stopped and stopped >= term_at and partial == []  # cleaned up
    assert logged_steps(workdir)[-1] == stopped  # it stopped right at the checkpoint

    # 4. The same command again finishes the run.
    job = Job(workdir, next(log), cache)
    assert job.finish() == 0, job.output()[-3000:]
    assert_resumed_from(job, stopped, seed)
    assert reference.finish() == 0, reference.output()[-3000:]

    config = quickstart_config()
    final = {}
    for name, directory in (("reference", reference_dir), ("interrupted", workdir)):
        _, state, step = trainer.restore_for_eval(config, directory)
        assert step == STEPS
        final[name] = jax.device_get(state)
    for a, b in zip(jax.tree.leaves(final["reference"]), jax.tree.leaves(final["interrupted"]),
                    strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"seed {seed}")
    summaries = {}
    for name, directory in (("reference", reference_dir), ("interrupted", workdir)):
        with open(os.path.join(directory, "summary.json")) as f:
            summaries[name] = json.load(f)
    for key in ("accuracy", "top5", "eval_loss", "steps", "skipped_steps"):
        assert summaries["reference"][key] == summaries["interrupted"][key], (key, seed)
    # Every loss logged by any of the five processes equals the uninterrupted run's loss
    # at that step (steps redone after a kill log again, with the same value).
    losses = {}
    for directory in (reference_dir, workdir):
        with open(os.path.join(directory, "metrics.jsonl")) as f:
            losses[directory] = [(m["step"], m["loss"]) for m in map(json.loads, f)
                                 if m["split"] == "train"]
    expected = dict(losses[reference_dir])
    assert sorted(expected) == list(range(1, STEPS + 1))
    assert all(expected[step] == loss for step, loss in losses[workdir]), seed
    assert len(losses[workdir]) > STEPS  # some steps were indeed trained twice
