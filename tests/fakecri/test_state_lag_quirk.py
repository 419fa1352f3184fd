"""fakecri's ``state_lag`` quirk (DESIGN.md section 6): exits show late, as on real containerd.

A lagged exit is pending: List/Status show the container running with no ``finished_at``, the
stream says nothing, RemoveContainer fails with containerd's remove-race error; once revealed, the
status carries the exit's own time and the truth record both times.
"""

from __future__ import annotations

import pytest

from fakecri import scenario as sc
from fakecri.clock import VirtualClock
from fakecri.flavors import FLAVORS, get_flavor
from fakecri.harness import Harness
from fakecri.model import RuntimeModel
from fakecri.truth import ContainerTransition, from_dict, to_dict

MS = 1_000_000


def running(flavor: str = "containerd-1.7"):  # type: ignore[no-untyped-def]
    clock = VirtualClock()
    m = RuntimeModel(clock, get_flavor(flavor), seed=1)
    m.pull_image("busybox")
    s = m.run_pod_sandbox("web", "default", "uid-1")
    c = m.create_container(s.id, "app", 0, "busybox")
    m.start_container(c.id)
    changes: list[str] = []
    m.on_change(lambda kind, obj, tr: changes.append(tr))
    return m, clock, s, c, changes


def test_every_containerd_and_crio_flavour_lags_by_default() -> None:
    lagging = {name for name, f in FLAVORS.items() if f.state_lag_ns > 0}
    assert lagging == {n for n in FLAVORS if n.startswith(("containerd-", "crio-"))}


def test_a_lagged_exit_is_pending_until_revealed() -> None:
    m, clock, _, c, changes = running()
    exited_at = clock.now_ns()
    m.exit_container(c.id, 3, lagged=True)
    clock.advance(45 * MS)
    st = m.container_status(c.id)
    assert (st.state, st.finished_at) == ("running", 0)
    assert [x.state for x in m.list_containers()] == ["running"]
    assert changes == []  # nothing streamed yet
    assert m.reveal_exit(c.id)
    st = m.container_status(c.id)
    assert (st.state, st.finished_at, st.exit_code, st.reason) == ("exited", exited_at, 3, "Error")
    assert changes == ["exited"]
    rec = [r for r in m.truth if isinstance(r, ContainerTransition)][-1]
    assert (rec.transition, rec.time_ns, rec.shown_ns) == ("exited", exited_at, exited_at + 45 * MS)
    assert from_dict(to_dict(rec, 7)) == (7, rec)
    assert not m.reveal_exit(c.id)
    m.remove_container(c.id)


def test_remove_shows_the_pending_exit_first() -> None:
    """containerd's RemoveContainer stops a running container first, which waits until the exit is
    handled: it succeeds (recorded on 1.7 and 2.1: tests/fidelity/recordings)."""
    m, clock, _, c, changes = running()
    exited_at = clock.now_ns()
    m.exit_container(c.id, 5, lagged=True)
    clock.advance(10 * MS)
    m.remove_container(c.id)
    assert changes == ["exited", "destroyed"]
    rec = [r for r in m.truth if isinstance(r, ContainerTransition)][-2]
    assert (rec.transition, rec.exit_code, rec.time_ns, rec.shown_ns) == ("exited", 5, exited_at, exited_at + 10 * MS)


def test_stop_and_pod_stop_reveal_the_pending_exit_with_its_own_code() -> None:
    m, clock, _, c, _ = running()
    m.exit_container(c.id, 0, lagged=True)
    clock.advance(5 * MS)
    m.stop_container(c.id)  # containerd's Stop waits until the exit is processed
    st = m.container_status(c.id)
    assert (st.state, st.exit_code, st.reason) == ("exited", 0, "Completed")
    m2, _, s2, c2, _ = running()
    m2.exit_container(c2.id, 2, lagged=True)
    m2.stop_pod_sandbox(s2.id)
    assert m2.container_status(c2.id).exit_code == 2


def test_unlagged_exits_and_lag_free_flavours_show_at_once() -> None:
    m, _, _, c, _ = running()
    m.exit_container(c.id, 1)
    assert m.container_status(c.id).state == "exited"
    m, _, _, c, _ = running()
    m.flavor = m.flavor.replace(state_lag_ns=0)
    m.exit_container(c.id, 1, lagged=True)
    rec = [r for r in m.truth if isinstance(r, ContainerTransition)][-1]
    assert m.container_status(c.id).state == "exited" and rec.shown_ns is None
    assert "shown_ns" not in to_dict(rec, 0)


def _scenario(lag: int | None) -> sc.Scenario:
    return sc.Scenario(flavor="containerd-2.0", quirks=sc.Quirks(state_lag_ns=lag), timeline=(
        sc.RunPod(at_ns=0, pod="web"), sc.CreateContainer(at_ns=0, container="app", pod="web", start=True),
        sc.CreateContainer(at_ns=0, container="b", pod="web", start=True),
        sc.ExitContainer(at_ns=100 * MS, container="app", code=4),
        sc.RemoveContainer(at_ns=101 * MS, container="app"), sc.ExitContainer(at_ns=150 * MS, container="b"),
        sc.RemoveContainer(at_ns=250 * MS, container="b")), end_ns=300 * MS)


@pytest.mark.parametrize(("lag", "b_shown_ms"), [(None, 175), (60 * MS, 210), (0, None)])
def test_the_harness_reveals_after_the_lag_or_at_a_removal(tmp_path, lag: int | None,
                                                           b_shown_ms: int | None) -> None:  # type: ignore[no-untyped-def]
    with Harness(_scenario(lag), socket=str(tmp_path / "cri.sock"), clock="virtual") as h:
        h.run_to_end()
        recs = {(r.name, r.transition): r for r in h.truth if isinstance(r, ContainerTransition)}
        assert h.skipped == []

    def ms(t: int | None) -> int | None:
        return None if t is None else (t - h.start_ns) // MS

    # app: removed 1 ms after its exit, within the lag: the removal shows the exit (RemoveContainer stops first)
    assert ms(recs["app", "exited"].time_ns) == 100 and ms(recs["app", "destroyed"].time_ns) == 101
    assert ms(recs["app", "exited"].shown_ns) == (None if lag == 0 else 101)
    # b: the lag passes before its removal: shown then
    assert ms(recs["b", "exited"].time_ns) == 150 and ms(recs["b", "exited"].shown_ns) == b_shown_ms


def test_the_quirk_round_trips_through_yaml() -> None:
    s = sc.loads("flavor: containerd-1.7\nquirks: {state_lag: 80ms}\ntimeline: []\nend: 1s\n")
    assert s.quirks.state_lag_ns == 80 * MS
    assert sc.flavor_of(s).state_lag_ns == 80 * MS
    assert sc.loads(sc.dumps(s)).quirks.state_lag_ns == 80 * MS
    off = sc.loads("flavor: containerd-1.7\nquirks: {state_lag: false}\ntimeline: []\nend: 1s\n")
    assert sc.flavor_of(off).state_lag_ns == 0


def test_an_exit_while_containerd_is_down_loses_its_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Real 1.7/2.1 (rr/test_sensor_stream_real.py): after a restart, a process that exited while
    containerd was down shows exit_code 255, reason Unknown. CRI-O flavours keep the code."""
    for flavor, want in (("containerd-1.7", (255, "Unknown")), ("crio-1.26", (0, "Completed"))):
        with Harness("runtime_restart", socket=str(tmp_path / f"{flavor}.sock"), flavor=flavor,
                     clock="virtual") as h:
            h.run_to_end()
            ex = [r for r in h.truth if isinstance(r, ContainerTransition) and r.name == "short"
                  and r.transition == "exited"]
        assert [(r.exit_code, r.reason) for r in ex] == [want], flavor
