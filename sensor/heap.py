"""The long-running sensor's heap: glibc's malloc arenas and Python's cyclic garbage collector.

Why two settings, both measured at 10,000 containers (``python -m bench.bench_process``,
docs/performance.md "Memory" and "Churn"):

* **Arenas** (``limit_arenas``). glibc gives each thread that mallocs an arena of its own (up to 8
  per core), and memory freed into one arena is not reused by another. grpcio's threads receive
  every list answer (7 MB, four times a second) while the Python thread decodes it, so the
  answers' buffers spread over several arenas that each keep their high-water mark: peak RSS was
  142-146 MB with glibc's default, 120 MB with two arenas, 114 MB with one, at the same CPU per
  poll. Fixing the mmap threshold as well cut a few MB more but doubled the CPU per poll (every
  answer mapped and unmapped anew), so it stays dynamic. Set with ``mallopt(M_ARENA_MAX)``, only
  where the C library is glibc and the operator has not chosen (``MALLOC_ARENA_MAX`` wins), and
  before any thread starts: arenas already handed out are kept.
* **The collector** (``FreezeOnce``). After the first snapshot the sensor holds a record per
  container, which it keeps for the container's life; each full collection walked all of them:
  43-49 ms at 10,000 containers, five times in 25 s under churn, each a poll over its interval.
  ``gc.freeze()`` right after the first snapshot moves what exists then out of the collector's
  sight; reference counting still frees those objects when they go. What it costs: a reference
  cycle among them that becomes garbage later is never collected -- bounded by what existed at
  the first snapshot, once (the sensor's records hold no cycles).
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable

#: ``M_ARENA_MAX`` from glibc's ``malloc.h``.
_M_ARENA_MAX = -8
#: Arenas the sensor allows: the Python thread and grpcio's threads share two.
ARENAS = 2
#: The operator's own choice, honoured as glibc itself would.
ENV = "MALLOC_ARENA_MAX"


def limit_arenas(arenas: int = ARENAS, env: dict[str, str] | None = None) -> bool:
    """Cap glibc's arenas at ``arenas``; ``True`` if the cap was set, ``False`` when the environment
    already sets one or the C library is not glibc (then nothing changes)."""
    if ENV in (os.environ if env is None else env):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has mallopt as a no-op stub
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


class FreezeOnce:
    """A ``Poller.on_poll`` callback: ``gc.freeze()`` after the first successful poll, then nothing."""

    def __init__(self, freeze: Callable[[], None] = gc.freeze) -> None:
        self._freeze = freeze
        self.done = False

    def __call__(self, _started_ns: int) -> None:
        if not self.done:
            self.done = True
            self._freeze()
