"""Runs a sweep's commands on this host, K at a time, stoppable and resumable.

A run whose ROOT/<run>/summary.json exists is done and skipped, so running the same
sweep again resumes it (train.py itself resumes an interrupted run from its
checkpoints). Each run's output goes to ROOT/<run>/log.txt. At the time limit, or on
SIGTERM/SIGINT, running runs get SIGTERM (train.py then checkpoints and exits 143),
then SIGKILL after a grace period.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import signal
import subprocess
import time
from typing import Any, Callable, Optional, Sequence

from smh_jax.experiments.expansion import Run

SUMMARY_FILE = "summary.json"
LOG_FILE = "log.txt"


def child_env(base_env: dict[str, str], parallel: int,
              mem_fraction: Optional[float]) -> dict[str, str]:
    """The environment of every run: with several runs sharing one accelerator, no
    preallocation and a memory cap each (XLA's default grabs 75% for one process)."""
    env = dict(base_env)
    if parallel > 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if mem_fraction is None and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env:
            mem_fraction = round(0.75 / parallel, 3)
        if mem_fraction is not None:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(mem_fraction)
    return env


class _Stop(Exception):
    pass


def execute(runs: Sequence[Run], root: str, command: Callable[[Run], list[str]], parallel: int,
            env: Optional[dict[str, str]] = None, time_limit: float = 0.0, grace: float = 60.0,
            poll: float = 0.5, log: Callable[[str], None] = print) -> dict[str, str]:
    """Runs what is not done yet, `parallel` at a time; returns run name -> outcome.

    `command(run)` is the argv of a run. At `time_limit` seconds (0: none) or on
    SIGTERM/SIGINT the running runs get SIGTERM, then SIGKILL after `grace` seconds.
    """
    outcome: dict[str, str] = {}
    pending = []
    for run in runs:
        if os.path.exists(os.path.join(root, run.name, SUMMARY_FILE)):
            outcome[run.name] = "done before"
            log(f"skip {run.name}: {SUMMARY_FILE} exists")
        else:
            pending.append(run)
    running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    start = time.time()
    stop_reason = ""

    def on_signal(signum, frame):
        del frame
        raise _Stop(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        try:
            total, started = len(pending), 0
            while pending or running:
                while pending and len(running) < parallel:
                    run = pending.pop(0)
                    started += 1
                    workdir = os.path.join(root, run.name)
                    os.makedirs(workdir, exist_ok=True)
                    log_file = open(os.path.join(workdir, LOG_FILE), "a", encoding="utf-8")
                    argv = command(run)
                    log_file.write(f"# {datetime.datetime.now().isoformat(timespec='seconds')} "
                                   f"{shlex.join(argv)}\n")
                    log_file.flush()
                    proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                            env=env, stdin=subprocess.DEVNULL)
                    running[run.name] = (proc, log_file, time.time())
                    log(f"[{started}/{total}] start {run.name} (pid {proc.pid})")
                for name, (proc, log_file, t0) in list(running.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    log_file.close()
                    del running[name]
                    outcome[name] = _report(root, name, rc, time.time() - t0, log)
                if time_limit and time.time() - start > time_limit:
                    raise _Stop(f"time limit of {time_limit:g} s")
                if pending or running:
                    time.sleep(poll)
        except _Stop as e:
            stop_reason = str(e)
        if stop_reason:
            log(f"stopping: {stop_reason}; {len(running)} running runs get SIGTERM, "
                f"{len(pending)} not started")
            for proc, _, _ in running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + grace
            for name, (proc, log_file, t0) in running.items():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log_file.close()
                outcome[name] = _report(root, name, proc.returncode, time.time() - t0, log,
                                        stopped=True)
            for run in pending:
                outcome[run.name] = "not started"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome


def succeeded(outcome: str) -> bool:
    return outcome.startswith("done")


def _report(root: str, name: str, rc: int, seconds: float, log: Callable[[str], None],
            stopped: bool = False) -> str:
    summary_path = os.path.join(root, name, SUMMARY_FILE)
    if rc == 0 and os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            accuracy = json.load(f)["accuracy"]
        text = f"done in {seconds:.0f} s, accuracy {100 * accuracy:.2f}%"
    elif stopped:
        text = (f"stopped after {seconds:.0f} s (exit {rc}; 143: checkpointed, rerun to "
                "resume)")
    else:
        text = f"FAILED (exit {rc}) after {seconds:.0f} s: {_last_line(root, name)}"
    log(f"{name}: {text}")
    return text


def _last_line(root: str, name: str) -> str:
    try:
        with open(os.path.join(root, name, LOG_FILE), encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"
