"""Bounded fan-out of unary calls: at most ``limit`` in flight, results taken in issue order.

Why: a poll may need hundreds of ContainerStatus answers (a churning node, the exited containers
of a first snapshot). One after the other, each costs a full round trip through the runtime's
thread pool; a few in flight let the runtime answer the next while the sensor decodes the last.
The bound keeps the sensor from flooding a runtime that is slow already (every call still has its
deadline), and issue-order collection keeps the result a function of the IDs, not of timing.

Pure of gRPC: ``start(id)`` returns a future-like handle (or raises to stop issuing), ``take(id,
handle)`` collects one and returns an error that ends the fan-out (``None`` to go on). On such an
error the handles still in flight are cancelled and the error is returned.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

E = TypeVar("E")


def fan_out(ids: Iterable[str], start: Callable[[str], Any], take: Callable[[str, Any], E | None],
            limit: int, *, more: Callable[[], bool] | None = None,
            issued: Callable[[], None] | None = None) -> E | None:
    """Issue ``start`` for every ID with at most ``limit`` outstanding; ``take`` each in issue
    order. Returns the first error ``take`` reports (the rest are cancelled, not taken), else None.
    An exception from ``start`` cancels what is in flight and propagates. ``more()``, asked before
    each issue, False: issue no more (what is in flight is still taken) -- a time budget.
    ``issued()`` is called once, as soon as nothing more will be issued (however that came)."""
    limit = max(1, limit)
    flight: deque[tuple[str, Any]] = deque()
    try:
        try:
            for cid in ids:
                while len(flight) >= limit:
                    err = take(*flight.popleft())
                    if err is not None:
                        return err
                if more is not None and not more():
                    break
                flight.append((cid, start(cid)))
        finally:
            if issued is not None:
                issued()
        while flight:
            err = take(*flight.popleft())
            if err is not None:
                return err
        return None
    finally:
        for _, handle in flight:
            handle.cancel()
