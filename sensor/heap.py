"""The long-running sensor's heap: glibc's malloc arenas and Python's cyclic garbage collector.

Why four settings, all measured at 10,000 containers (``python -m bench.bench_process``,
docs/performance.md "Memory" and "Churn"):

* **Arenas** (``limit_arenas``). glibc gives each thread that mallocs an arena of its own (up to 8
  per core), and memory freed into one arena is not reused by another. grpcio's threads receive
  every list answer (7 MB, four times a second) while the Python thread decodes it, so the
  answers' buffers spread over several arenas that each keep their high-water mark: peak RSS was
  142-146 MB with glibc's default. Two arenas gave 119-137 MB, as a run's buffers happened to
  fall; one gives 111-113 MB idle and 118-127 MB under churn, at the same CPU per idle poll and
  ~4% more under churn (the threads take one lock). Set with ``mallopt(M_ARENA_MAX)``, only
  where the C library is glibc and the operator has not chosen (``MALLOC_ARENA_MAX`` wins), and
  before any thread starts: arenas already handed out are kept.
* **Thresholds** (``keep_freed_memory``). With glibc's dynamic thresholds the answers' buffers were
  now and then mapped anew or trimmed from an arena's top (``madvise``), and the next answer faulted
  its pages in again: 40-60 minor faults per steady poll at 1,000 containers, 200-700 at 10,000.
  A fixed mmap threshold of 32 MiB (an answer up to ~45,000 containers lives in an arena) with a
  64 MiB trim threshold keeps the freed buffers for the next answer: 5-12 faults per poll at 1,000,
  ~50 at 10,000, and ~0.1 ms less CPU per poll at 1,000. A fixed *low* threshold did the opposite
  (every answer mapped and unmapped anew: twice the CPU). Peak RSS is what the DaemonSet's limit
  covers; memory kept in the arenas stays under that peak. ``MALLOC_MMAP_THRESHOLD_`` or
  ``MALLOC_TRIM_THRESHOLD_`` in the environment wins, as with glibc itself.
* **The collector** (``FreezeOnce``). After the first snapshot the sensor holds a record per
  container, which it keeps for the container's life; each full collection walked all of them:
  43-49 ms at 10,000 containers, five times in 25 s under churn, each a poll over its interval.
  ``gc.freeze()`` right after the first snapshot moves what exists then out of the collector's
  sight; reference counting still frees those objects when they go. What it costs: a reference
  cycle among them that becomes garbage later is never collected -- bounded by what existed at
  the first snapshot, once (the sensor's records hold no cycles).
* **Between polls** (``collector_paused``, ``Poller.pause_collector``). The collector is off while a
  poll runs and collects what is due right after it. A poll allocates what it keeps (the first
  snapshot: ~200,000 objects at 10,000 containers, where the full collection inside it
  walked them all for nothing) or what reference counting frees; under churn the collections that
  fell inside polls took ~5 ms of each (7 young ones a poll), and now and then a full one 20-35 ms
  of a single poll. Between polls they delay nothing: the next poll is a tick away.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable

#: ``M_ARENA_MAX``, ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` from glibc's ``malloc.h``.
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
_M_TRIM_THRESHOLD = -1
#: Allocations this large or larger are mapped apart; glibc's largest allowed value on 64-bit: 32 MiB.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of an arena is handed back to the kernel only past this much.
TRIM_THRESHOLD = 64 * 1024 * 1024
#: The operator's own choices, honoured as glibc itself would.
KEEP_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
#: Arenas the sensor allows: the Python thread and grpcio's threads share one.
ARENAS = 1
#: The operator's own choice, honoured as glibc itself would.
ENV = "MALLOC_ARENA_MAX"


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or ``None`` where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has mallopt as a no-op stub
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt  # type: ignore[no-any-return]


def limit_arenas(arenas: int = ARENAS, env: dict[str, str] | None = None) -> bool:
    """Cap glibc's arenas at ``arenas``; ``True`` if the cap was set, ``False`` when the environment
    already sets one or the C library is not glibc (then nothing changes)."""
    if ENV in (os.environ if env is None else env):
        return False
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, arenas))


def keep_freed_memory(env: dict[str, str] | None = None) -> bool:
    """Keep list answers in the arenas: fixed thresholds (``MMAP_THRESHOLD``, ``TRIM_THRESHOLD``)
    instead of glibc's dynamic ones. ``True`` if set; ``False`` when the environment sets either
    (then nothing changes) or the C library is not glibc."""
    if any(k in (os.environ if env is None else env) for k in KEEP_ENV):
        return False
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class collector_paused:
    """The cyclic collector off for the block (as it was after): for work that only allocates what
    it keeps, where a collection can free nothing and walks everything. Reference counting still
    frees what the block drops. A class, not a generator: it is entered on every poll."""

    __slots__ = ("_was",)

    def __enter__(self) -> None:
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *_exc: object) -> None:
        if self._was:
            gc.enable()


class FreezeOnce:
    """A ``Poller.on_poll`` callback: ``gc.freeze()`` after the first successful poll, then nothing."""

    def __init__(self, freeze: Callable[[], None] = gc.freeze) -> None:
        self._freeze = freeze
        self.done = False

    def __call__(self, _started_ns: int) -> None:
        if not self.done:
            self.done = True
            self._freeze()
