"""The emitter: assigns ``seq`` and writes events as JSON lines, one flush per batch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import IO

from sensor.events import Event


class Emitter:
    """Numbers events (strictly increasing ``seq`` per run) and hands them to the sinks.

    ``out`` receives JSON lines; ``listeners`` receive the numbered ``Event`` objects (tests,
    the analytics stage). Thread-safe: the poll loop and the event stream both emit.
    """

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out
        self.seq = 0
        self.listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

    def emit(self, events: Iterable[Event]) -> list[Event]:
        done: list[Event] = []
        with self._lock:
            for e in events:
                self.seq += 1
                numbered = e.with_seq(self.seq)
                done.append(numbered)
                if self.out is not None:
                    self.out.write(numbered.to_json() + "\n")
                for listener in self.listeners:
                    listener(numbered)
            if done and self.out is not None:
                self.out.flush()
        return done
