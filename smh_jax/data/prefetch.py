"""A train iterator that builds batches ahead on a daemon thread.

The batch function is a pure function of the step (see `in_memory.BatchMaker`), so the
thread can run ahead and a resumed iterator rebuilds exactly the same batches.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from smh_jax.data.base import TrainIterator


class BatchFunction(Protocol):
    """Local train batch `step`; `close()` releases its worker threads."""

    def __call__(self, step: int) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Puts `item` unless `stop` is set first (the consumer may be gone)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _produce(make: BatchFunction, step: int, out: queue.Queue, stop: threading.Event) -> None:
    """Prefetch loop: fills `out` with (step, batch) until `stop` is set."""
    try:
        while not stop.is_set():
            _put(out, (step, make(step)), stop)
            step += 1
    except BaseException as e:  # noqa: BLE001 - the consumer re-raises it.
        _put(out, (None, e), stop)
    finally:
        make.close()


class PrefetchTrainIterator(TrainIterator):
    """Infinite train batches with a small daemon prefetch thread (0 = synchronous).

    The thread holds the batch function, not the iterator, so dropping an unclosed
    iterator stops the thread too.
    """

    def __init__(self, make: BatchFunction, start_step: int, state_fn: Callable[[int], dict],
                 prefetch: int = 2):
        self._make = make
        self._step = start_step
        self._state_fn = state_fn
        self._prefetch = prefetch
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, self._stop.set)

    def __next__(self) -> dict[str, np.ndarray]:
        if self._closed:
            raise StopIteration
        if self._prefetch <= 0:
            batch = self._make(self._step)
        else:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_produce, args=(self._make, self._step, self._queue, self._stop),
                    name="smh_data_prefetch", daemon=True)
                self._thread.start()
            while True:
                try:
                    step, batch = self._queue.get(timeout=1.0)
                    break
                except queue.Empty:
                    if not self._thread.is_alive():
                        raise RuntimeError("data prefetch thread died") from None
            if step is None:
                self.close()
                raise batch
            assert step == self._step, (step, self._step)
        self._step += 1
        return batch

    def state(self) -> dict[str, Any]:
        return self._state_fn(self._step)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        else:
            self._make.close()
