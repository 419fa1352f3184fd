"""Cap the C allocator's arenas for the long-running sensor.

Why: glibc gives each thread that contends for ``malloc`` an arena of its own (up to 8 per core),
and memory freed into one arena is not reused by another. grpcio's threads receive every list
answer (7 MB at 10,000 containers, four times a second) while the Python thread decodes it, so
each answer's buffers end up spread over several arenas that each keep their high-water mark.
Measured at 10,000 containers (``python -m bench.bench_process``, docs/performance.md "Memory"):
peak RSS 142-146 MB with glibc's default, 120 MB with two arenas, 114 MB with one, at the same CPU
per poll. Fixing the mmap threshold as well cut another few MB but doubled the CPU per poll (every
answer's buffers mapped and unmapped anew), so it is left dynamic.

Only the arena count is set, through ``mallopt(M_ARENA_MAX)``, and only when the operator has not
chosen one (``MALLOC_ARENA_MAX`` in the environment wins) and the C library is glibc. It must run
before the process starts threads: arenas already handed out are kept.
"""

from __future__ import annotations

import ctypes
import os

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
