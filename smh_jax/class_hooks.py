"""Class-level hooks that observe one thread: how `compress` records a model's construction.

Both wrappers (linen's `init_sampling`, NNX's `recording`) learn a model's parameters by
watching it being built: they replace a few class attributes of the framework (linen's
`Module.param`, NNX's metaclass hooks) with versions that note each call. The
replacements stay installed while any recording is open, in any thread (reference
counted), and note only the calls made on a thread with an open recording; recordings
nest (the innermost one on a thread receives the calls).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class ThreadHooks(Generic[T]):
    """Replaces `owner.name` by `replacement` for each triple while a recording is open.

    The replacements ask `current()` for the open recording of their thread (None on
    other threads) and call the attribute they replaced, kept in `original(owner, name)`.
    """

    def __init__(self, patches: Sequence[tuple[Any, str, Callable]]):
        self._patches = tuple(patches)
        self._originals = {(id(owner), name): getattr(owner, name)
                           for owner, name, _ in self._patches}
        self._lock = threading.Lock()
        self._users = 0
        self._local = threading.local()

    def original(self, owner: Any, name: str) -> Callable:
        return self._originals[(id(owner), name)]

    def current(self) -> Optional[T]:
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    @contextlib.contextmanager
    def recording(self, record: T) -> Iterator[T]:
        """Installs the hooks (first user) and sends this thread's calls to `record`."""
        with self._lock:
            if self._users == 0:
                for owner, name, replacement in self._patches:
                    setattr(owner, name, replacement)
            self._users += 1
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        self._local.stack.append(record)
        try:
            yield record
        finally:
            self._local.stack.pop()
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    for owner, name, _ in self._patches:
                        setattr(owner, name, self.original(owner, name))
