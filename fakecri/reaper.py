"""The real-time reaper: applies process exits and log writes when they fall due on a real clock.

The model applies due processes whenever it is asked anything (``RuntimeModel.settle``), which
is all a virtual clock needs: time moves only when a test moves it, and the harness settles
after every move. On a real clock nobody may ask -- a client that only watches the event stream
must still get the EXITED event when the process exits -- so this thread sleeps until the next
due instant and settles then. It is owned by the server: ``start``/``stop`` (joined), restarted
with it.
"""

from __future__ import annotations

import threading

from fakecri.clock import VirtualClock
from fakecri.model import RuntimeModel

#: Longest sleep before a due instant (a wall clock that jumps costs at most this).
MAX_WAIT_S = 0.5


class Reaper:
    def __init__(self, model: RuntimeModel) -> None:
        self.model = model
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Reaper:
        """Start the thread (not on a virtual clock: there, the model settles when time moves)."""
        if self._thread is not None or isinstance(self.model.clock, VirtualClock):
            return self
        self._stop.clear()
        self.model.processes.wakeup = self._wake.set
        self._thread = threading.Thread(target=self._run, name="fakecri-reaper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        model = self.model
        while not self._stop.is_set():
            with model.lock:
                model.settle()
                due = model.next_due()  # process events and state-lag reveals
                now = model.clock.now_ns()
                self._wake.clear()
            # nothing scheduled: sleep until ``start`` schedules something (wakeup) or ``stop``
            wait = None if due is None else min(MAX_WAIT_S, max(0.0, (due - now) / 1e9))
            self._wake.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.model.processes.wakeup == self._wake.set:
            self.model.processes.wakeup = None
