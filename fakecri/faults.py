"""Faults: a ``CallPolicy`` whose misbehaviours are switched on and off by the timeline.

Each fault is a window: ``start(name, params)`` opens it and ``stop(name)`` closes it; both write
a truth ``fault`` record (``phase: start``/``stop``), so the verifier knows exactly when the
runtime misbehaved. The catalogue (parameters are checked by ``fakecri.scenario.FAULTS``):

``latency``          every RPC (or those in ``methods``) is answered ``ms`` milliseconds late.
``hang``             RPCs (or ``methods``) block until the client's deadline passes, then fail
                     DEADLINE_EXCEEDED; ``stop`` releases blocked calls at once (they then
                     answer normally, late). ``max`` bounds a call with no deadline (default 30s).
``unavailable``      RPCs (or ``methods``) fail with UNAVAILABLE -- for the whole window, or for
                     the next ``count`` calls (a burst; the window closes itself after them).
``id_reuse``         the next created containers take the IDs of removed ones, most recently
                     removed first (``count`` of them, or every creation while the window is open).
``duplicate_ids``    list answers (``lists``: containers, sandboxes; default both) repeat one item.
``missing_metadata`` list items come without ``metadata``.
``zero_timestamps``  list and status answers report 0 for created_at/started_at/finished_at.
``future_timestamps`` ... report now + 1 h for those that are set.
``notfound_race``    right after a ListContainers answer is taken, one exited container in it is
                     really removed (as kubelet's garbage collector would), so a ContainerStatus
                     for it gets NOT_FOUND although the list just showed it. ``count`` bounds how
                     many containers it removes. Truth records the removal like any other.

Runtime restarts are not a window here but a timeline step (``restart_runtime``, see
``fakecri.harness``); huge lists come from the ``large_node`` generator.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from fakecri.model import CriError, RuntimeModel
from fakecri.server import CallPolicy, current_context
from fakecri.truth import FaultWindow

HOUR_NS = 3_600_000_000_000
DEFAULT_HANG_MAX_S = 30.0
_ALL_LISTS = ("containers", "sandboxes")
#: A hung call released this close to its deadline is treated as timed out (client/server skew).
_DEADLINE_SKEW_S = 0.05


class FaultPolicy(CallPolicy):
    """The fault windows of one runtime. Thread-safe: gRPC handler threads consult it."""

    def __init__(self, model: RuntimeModel) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._active: dict[str, dict[str, Any]] = {}
        self._release = threading.Event()  # set while no hang is on: releases blocked calls
        self._release.set()
        self._unavailable_left: int | None = None
        self._race_left: int | None = None
        self._removed: collections.deque[str] = collections.deque(maxlen=100_000)
        model.on_change(self._on_change)

    # ---- windows ---------------------------------------------------------------------------

    def active(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._active.items()}

    def is_on(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def start(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        params = dict(params or {})
        with self.model.lock, self._lock:
            if name in self._active:
                raise ValueError(f"fault {name} is already on")
            self._active[name] = params
            if name == "hang":
                self._release.clear()
            elif name == "unavailable":
                self._unavailable_left = params.get("count")
            elif name == "notfound_race":
                self._race_left = params.get("count")
            elif name == "id_reuse":
                live = self.model.containers
                ids = [cid for cid in reversed(self._removed) if cid not in live]
                n = params.get("count")
                self.model.reuse_ids[:] = ids[:n] if n is not None else ids
            self.model.truth.record(FaultWindow(name, "start", self.model.clock.now_ns(), params))

    def stop(self, name: str) -> None:
        with self.model.lock, self._lock:
            self._stop_locked(name)

    def _stop_locked(self, name: str) -> None:
        params = self._active.pop(name, None)
        if params is None:
            return
        if name == "hang":
            self._release.set()
        elif name == "id_reuse":
            self.model.reuse_ids.clear()
        self.model.truth.record(FaultWindow(name, "stop", self.model.clock.now_ns(), params))

    def release_all(self) -> None:
        """Release blocked (hung) calls without closing the window (runtime going down)."""
        self._release.set()

    def rearm(self) -> None:
        """After ``release_all`` (runtime back up): block calls again if a hang window is still open."""
        with self._lock:
            if "hang" in self._active:
                self._release.clear()

    def _on_change(self, kind: str, obj: Any, transition: str) -> None:
        # Called under the model lock.
        if kind != "container" or transition != "destroyed":
            return
        self._removed.append(obj.id)
        with self._lock:
            reuse = self._active.get("id_reuse")
            if reuse is not None and reuse.get("count") is None:
                self.model.reuse_ids.insert(0, obj.id)

    # ---- CallPolicy hooks --------------------------------------------------------------------

    @staticmethod
    def _applies(params: Mapping[str, Any], method: str) -> bool:
        methods = params.get("methods")
        return not methods or method in methods

    def before_call(self, method: str, api: str, target: str | None) -> None:
        with self._lock:
            active = dict(self._active)
        if not active:
            return
        lat = active.get("latency")
        if lat is not None and self._applies(lat, method):
            time.sleep(lat["ms"] / 1000.0)
        unav = active.get("unavailable")
        if unav is not None and self._applies(unav, method):
            self._fail_unavailable()
        hang = active.get("hang")
        if hang is not None and self._applies(hang, method):
            self._hang(hang)

    def _fail_unavailable(self) -> None:
        with self.model.lock, self._lock:
            if "unavailable" not in self._active:
                return  # the burst ended meanwhile
            if self._unavailable_left is not None:
                self._unavailable_left -= 1
                if self._unavailable_left <= 0:
                    self._stop_locked("unavailable")
        raise CriError("UNAVAILABLE", "fakecri: runtime unavailable (injected fault)")

    def _hang(self, params: Mapping[str, Any]) -> None:
        ctx = current_context()
        bound = params.get("max", DEFAULT_HANG_MAX_S * 1e9) / 1e9
        remaining = ctx.time_remaining() if ctx is not None else None
        wait = bound if remaining is None else min(bound, max(remaining, 0.0) + 0.05)
        self._release.wait(wait)
        left = ctx.time_remaining() if ctx is not None else None
        # The client gave up (or is about to: its clock runs a hair ahead of ours): no answer for it.
        if ctx is not None and (not ctx.is_active() or (left is not None and left < _DEADLINE_SKEW_S)):
            raise CriError("DEADLINE_EXCEEDED", "fakecri: the runtime hung past the client's deadline (injected)")
        # Released by stop (or the bound reached) while the client still waits: answer, late.

    def _lists(self, name: str, which: str) -> bool:
        params = self._active.get(name)
        return params is not None and which in params.get("lists", _ALL_LISTS)

    def shapes_lists(self) -> bool:
        with self._lock:
            return bool(self._active)

    def shape_containers(self, items: list[Any], pb: ModuleType) -> list[Any]:
        with self._lock:
            if not self._active:
                return items
            dup = self._lists("duplicate_ids", "containers")
            nometa = self._lists("missing_metadata", "containers")
            zero = "zero_timestamps" in self._active
            future = "future_timestamps" in self._active
            race = "notfound_race" in self._active
        items = self._timestamps(items, zero, future, ("created_at",))
        if nometa:
            items = [_cleared(i, "metadata") for i in items]
        if dup and items:
            items = [*items, _copy(items[0])]
        if race:
            self._race(items)
        return items

    def shape_sandboxes(self, items: list[Any], pb: ModuleType) -> list[Any]:
        with self._lock:
            if not self._active:
                return items
            dup = self._lists("duplicate_ids", "sandboxes")
            nometa = self._lists("missing_metadata", "sandboxes")
            zero = "zero_timestamps" in self._active
            future = "future_timestamps" in self._active
        items = self._timestamps(items, zero, future, ("created_at",))
        if nometa:
            items = [_cleared(i, "metadata") for i in items]
        if dup and items:
            items = [*items, _copy(items[0])]
        return items

    def shape_status(self, status: Any, pb: ModuleType) -> Any:
        with self._lock:
            zero = "zero_timestamps" in self._active
            future = "future_timestamps" in self._active
        if zero or future:
            return self._timestamps([status], zero, future, ("created_at", "started_at", "finished_at"))[0]
        return status

    def _timestamps(self, items: list[Any], zero: bool, future: bool, fields: tuple[str, ...]) -> list[Any]:
        if not (zero or future) or not items:
            return items
        later = self.model.clock.now_ns() + HOUR_NS
        out = []
        for item in items:
            item = _copy(item)
            for f in fields:
                if zero:
                    setattr(item, f, 0)
                elif getattr(item, f):
                    setattr(item, f, later)
            out.append(item)
        return out

    def _race(self, items: list[Any]) -> None:
        """Really remove one exited container of the answer just taken (kubelet GC between list and status)."""
        exited = [i.id for i in items if i.state == 2]  # CONTAINER_EXITED
        if not exited:
            return
        with self.model.lock:
            with self._lock:
                if "notfound_race" not in self._active:
                    return
            c = self.model.containers.get(exited[0])
            if c is None or c.state != "exited":
                return
            self.model.remove_container(c.id)
            with self._lock:
                if self._race_left is not None:
                    self._race_left -= 1
                    if self._race_left <= 0:
                        self._stop_locked("notfound_race")


def _copy(msg: Any) -> Any:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _cleared(msg: Any, field: str) -> Any:
    out = _copy(msg)
    out.ClearField(field)
    return out
