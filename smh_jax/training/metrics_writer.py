"""Where metrics go: a progress line, metrics.jsonl and TensorBoard event files."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from absl import logging


class MetricsWriter:
    """Writes scalars to WORKDIR/metrics.jsonl and WORKDIR/tensorboard (process 0 only)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        if not enabled:
            return
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            logging.warning("tensorboardX is not installed: no TensorBoard event files "
                            "(metrics.jsonl is still written); pip install tensorboardX")
        else:
            self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, "time": time.time(),
                  **{k: float(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in metrics.items():
                self._tensorboard.add_scalar(f"{split}/{key}", float(value), int(step))
            self._tensorboard.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


class Progress:
    """The periodic one-line report: step/total, metrics, lr, images/s, ETA."""

    def __init__(self, total_steps: int, global_batch: int, start_step: int):
        self.total_steps = total_steps
        self.global_batch = global_batch
        self._last_time = time.time()
        self._last_step = start_step

    def line(self, step: int, metrics: dict[str, float]) -> tuple[str, float]:
        now = time.time()
        steps = max(step - self._last_step, 1)
        rate = steps * self.global_batch / max(now - self._last_time, 1e-9)
        eta = (self.total_steps - step) * (now - self._last_time) / steps
        self._last_time, self._last_step = now, step
        shown = " | ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        return (f"step {step}/{self.total_steps} | {shown} | {rate:,.0f} img/s | "
                f"ETA {_duration(eta)}"), rate


def _duration(seconds: Optional[float]) -> str:
    seconds = int(max(seconds or 0, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
