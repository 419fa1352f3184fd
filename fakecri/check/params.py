"""Parameters of one guarantee check: what the sensor promised and which stretch of time was observed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

MS = 1_000_000

MODES = ("poll", "stream")


@dataclass(frozen=True)
class CheckParams:
    """How to judge a sensor's events against ground truth (docs/guarantees.md defines each use).

    ``poll_interval_ns``       the sensor's configured ``poll_interval``.
    ``mode``                   ``poll`` or ``stream`` (the sensor consumed ``GetContainerEvents``).
    ``latency_allowance_ns``   RPC time + scheduling slack added to every deadline.
    ``stream_latency_ns``      how fast a streamed transition must be reported.
    ``start_ns``/``end_ns``    the observed run; ``None`` = derived from the records (see docs).
    ``completeness_grace_ns``  extra slack on completeness deadlines (G2, the G6 gap), e.g. for a
                               sensor whose output passes a reorder buffer.
    ``sensor_restarts``        ``(down_ns, up_ns)`` per sensor kill and restart (G9).
    """

    poll_interval_ns: int
    mode: Literal["poll", "stream"] = "poll"
    latency_allowance_ns: int = 50 * MS
    stream_latency_ns: int = 10 * MS
    start_ns: int | None = None
    end_ns: int | None = None
    completeness_grace_ns: int = 0
    #: G9: ``(down_ns, up_ns)`` per time the sensor was killed and started again (fakecri verify
    #: --restart-sensor-at); empty: it ran once, and G9 is not part of the report
    sensor_restarts: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.poll_interval_ns <= 0:
            raise ValueError(f"poll_interval_ns must be > 0 (got {self.poll_interval_ns})")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (got {self.mode!r})")
        for name in ("latency_allowance_ns", "stream_latency_ns", "completeness_grace_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        for down, up in self.sensor_restarts:
            if up < down:
                raise ValueError(f"a sensor restart ends ({up}) before it begins ({down})")
        if self.start_ns is not None and self.end_ns is not None and self.end_ns < self.start_ns:
            raise ValueError(f"end_ns ({self.end_ns}) is before start_ns ({self.start_ns})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.sensor_restarts:  # reports of single runs keep their shape
            del d["sensor_restarts"]
        return d
