"""The checker fix the history search led to: a refused reconnect keeps the sensor blind.

HistoryMachine found a correct sensor judged late under G7: its list failed, its reconnect
(``Version``) was refused, and only the next poll listed again -- but the checker's outage ended at
the failed list. Failed ``Version`` answers now belong to the outage (docs/guarantees.md 2.3);
a lone failed ``Version`` between OK lists (a health check) still blinds nobody.
"""

from __future__ import annotations

from fakecri.check import CheckParams, check
from fakecri.check.observations import RpcLog
from fakecri.clock import VIRTUAL_EPOCH_NS
from fakecri.truth import PodRef, RpcServed, RuntimeTransition, SandboxTransition
from sensor.events import Event, Pod

MS = 1_000_000
P = 250 * MS


def at(ms: int) -> int:
    return VIRTUAL_EPOCH_NS + ms * MS


def rpc(method: str, ms: int, code: str = "OK") -> RpcServed:
    return RpcServed(method, "v1", at(ms), at(ms), code)


def ok_lists(ms: int) -> list[RpcServed]:
    return [rpc("ListPodSandbox", ms), rpc("ListContainers", ms)]


def outages(records: list) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    log = RpcLog(list(enumerate(records)), at(5000))
    return [((o.lo - VIRTUAL_EPOCH_NS) // MS, (o.hi - VIRTUAL_EPOCH_NS) // MS) for o in log.outages]


def test_a_refused_reconnect_extends_the_outage_and_excuses_the_late_event() -> None:
    sb = SandboxTransition("sb", "ready", at(335), pod=PodRef("p", "default", "u"))
    truth = [rpc("Version", 0), *ok_lists(0), rpc("ListPodSandbox", 250, "UNAVAILABLE"), sb,
             rpc("Version", 500, "UNAVAILABLE"), rpc("Version", 750), *ok_lists(750)]
    assert outages(truth) == [(250, 500)]
    ready = Event(type="sandbox.ready", time_ns=at(335), window_ns=(at(0), at(750)), observed_ns=at(750),
                  sandbox_id="sb", pod=Pod("p", "default", "u"), seq=2)
    gap = Event(type="sensor.gap", time_ns=at(0), window_ns=(at(0), at(750)), observed_ns=at(750), seq=1)
    report = check(truth, [gap, ready], CheckParams(poll_interval_ns=P, end_ns=at(1500)))
    assert report.ok, report.render()


def test_a_refused_reconnect_after_a_restart_is_part_of_the_outage() -> None:
    truth = [*ok_lists(0), RuntimeTransition("down", at(100)), RuntimeTransition("up", at(300)),
             rpc("Version", 500, "UNAVAILABLE"), *ok_lists(750)]
    assert outages(truth) == [(100, 300), (500, 500)]
    merged = [*ok_lists(0), RuntimeTransition("down", at(100)), RuntimeTransition("up", at(300)),
              rpc("Version", 300, "UNAVAILABLE"), *ok_lists(750)]
    assert outages(merged) == [(100, 300)]


def test_a_lone_failed_version_between_ok_lists_is_no_outage() -> None:
    truth = [*ok_lists(0), rpc("Version", 100, "UNAVAILABLE"), *ok_lists(250)]
    assert outages(truth) == []
