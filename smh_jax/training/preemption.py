"""SIGTERM (a preemption notice) as a flag that long loops poll between steps.

    with SigtermFlag() as stop:
        while ...:
            step()
            if stop.reached():
                break          # checkpoint / report what was done, then exit

The training loop and the benchmark's timing loop both use it: a SIGTERM then ends the
work at a clean point (after a step, after a complete round) instead of mid-way.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Optional


class Preempted(Exception):
    """Raised after a SIGTERM-triggered checkpoint; the CLI exits with status 143."""


class SigtermFlag:
    """Turns SIGTERM into a flag while installed (the previous handler comes back on exit).

    `sync_point`: with several processes, JAX's distributed preemption service owns
    SIGTERM and agrees on one step at which every process stops (e.g. Orbax's
    `reached_preemption(step)`). Installing a handler there would hide the notice from
    it, and processes stopping at different steps would deadlock in the checkpoint's
    collectives, so when `sync_point` is given no handler is installed and `reached(step)`
    asks it instead.

    Only the main thread can install a signal handler; elsewhere the flag never rises.
    """

    def __init__(self, sync_point: Optional[Callable[[int], bool]] = None):
        self.requested = False
        self._sync_point = sync_point
        self._previous = None
        if sync_point is None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def reached(self, step: int = 0) -> bool:
        """Whether to stop after `step` (the step matters only with a sync point)."""
        if self._sync_point is not None:
            return bool(self._sync_point(step))
        return self.requested

    def _handle(self, signum, frame) -> None:
        del signum, frame
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def __enter__(self) -> SigtermFlag:
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore()
