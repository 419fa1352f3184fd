"""A self-pipe the main thread sleeps on: ``crisensor run``'s supervisor wakes when there is
something to do, not every few milliseconds to look (docs/performance.md, "Idle streaming").

Who pokes it: the kernel, for SIGTERM/SIGINT (``signal.set_wakeup_fd``: a byte is written before
the Python handler even runs, so no lock is taken in a handler); the poll loop when it ends; a
failed output when it stops the sensor. ``wait`` returns at the first poke and drains what is
pending; it has no timeout of its own, so an idle sensor's main thread never wakes by the clock.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal


class Wakeup:
    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._old_fd: int | None = None

    def poke(self) -> None:
        """From any thread (or a signal's C handler): wake ``wait``. Never blocks."""
        with contextlib.suppress(BlockingIOError, OSError):  # a full pipe is awake already
            os.write(self._w, b"\0")

    def wait(self, timeout_s: float | None = None) -> None:
        """Sleep until poked (or ``timeout_s`` passed, if given); drain the pokes."""
        readable, _, _ = select.select([self._r], [], [], timeout_s)
        if readable:
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self._r, 512):
                    pass

    def watch_signals(self) -> None:
        """Have the kernel poke for every signal with a Python handler (main thread only)."""
        self._old_fd = signal.set_wakeup_fd(self._w)

    def unwatch_signals(self) -> None:
        """Give the signal wakeup back. The pipe itself stays open for the process's life: a poll loop
        left behind at shutdown may still poke, and a closed descriptor's number could by then name
        another file."""
        if self._old_fd is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(self._old_fd)
            self._old_fd = None
