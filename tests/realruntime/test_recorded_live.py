"""The recordings still describe the runtimes CI runs, and the stream facts the fake emulates.

* ``fakecri record`` against live containerd 1.7 and 2.1 gives the checked-in recording
  (tests/fidelity/recordings) up to the runtime's own nondeterminism (the same ``KEPT`` list as the
  recorded differential): a Debian update that changes a shape fails here, not in a user's cluster.
* API versions: 1.7 serves v1 and v1alpha2, 2.1 v1 only (v1alpha2 is UNIMPLEMENTED).
* Two GetContainerEvents subscribers: on 1.7 they share ONE queue (each event goes to one of
  them); 2.1 broadcasts. fakecri's ``containerd-1.7``/``containerd-2.1`` do the same
  (tests/fakecri/test_stream_shapes.py).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from crisensor_realruntime import containerd as rr
from crisensor_realruntime.cri import Cri

import cri_api
from fakecri.record import Recorder, Target, compare

pytestmark = [pytest.mark.realruntime, pytest.mark.slow]

RECORDINGS = Path(__file__).parents[1] / "fidelity" / "recordings"


def _kept():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "recorded_differential", Path(__file__).parents[1] / "fidelity" / "test_recorded_differential.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.KEPT


def test_live_runtime_matches_its_recording(streaming_containerd):
    h = streaming_containerd
    name = f"containerd-{h.release}"
    recorded = json.loads((RECORDINGS / f"{name}.json").read_text())
    rec = Recorder(Target(addr=h.addr, busybox_image=h.busybox_image, pause_image=h.pause_image,
                          log_root=str(h.tmpdir / "pod-logs"), cgroup_parent=h.cgroup_parent))
    try:
        live = rec.record()
    finally:
        rec.close()
    assert live["runtime"] == recorded["runtime"], "the runtime changed: re-record (scripts/realruntime/record_real.py)"
    kept = _kept()
    left = [d for d in compare(recorded, live) if not any(k.matches(name, d) for k in kept)]
    assert not left, "live differs from the recording:\n  " + "\n  ".join(map(str, left))


@pytest.mark.parametrize(("release", "apis"), [("1.7", {"runtime.v1", "runtime.v1alpha2"}), ("2.1", {"runtime.v1"})])
def test_api_versions(release, apis, request):
    h = request.getfixturevalue({"1.7": "containerd_17", "2.1": "containerd_21"}[release])
    served = set()
    for api in ("runtime.v1", "runtime.v1alpha2"):
        try:
            v = rr.cri_version(h.socket, api, timeout=5)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
            continue
        assert v["runtime_name"] == "containerd" and v["runtime_version"].startswith(release + ".")
        served.add(api)
    assert served == apis


def _two_subscribers(addr: str, churn) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Events about what ``churn`` made (it returns their IDs) that each of two subscribers got."""
    mods = cri_api.api("v1")
    got: list[list[str]] = [[], []]
    calls, channels = [], []
    for k in (0, 1):
        ch = grpc.insecure_channel(addr)
        channels.append(ch)
        call = mods.pb2_grpc.RuntimeServiceStub(ch).GetContainerEvents(mods.pb2.GetEventsRequest())
        calls.append(call)

        def read(call=call, k=k) -> None:  # type: ignore[no-untyped-def]
            try:
                for ev in call:
                    got[k].append(ev.container_id)
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
    time.sleep(0.3)
    ids = churn()
    time.sleep(0.5)
    for call in calls:
        call.cancel()
    for ch in channels:
        ch.close()
    return sum(i in ids for i in got[0]), sum(i in ids for i in got[1])


def test_two_subscribers_share_one_queue_on_17_and_are_broadcast_to_on_21(streaming_containerd):
    h = streaming_containerd

    def churn() -> set[str]:
        c = Cri(h)
        # a warm-up pod first: on 1.7 a subscription an earlier test closed still takes one event
        warm, _ = c.run_pod(f"warm-{time.time_ns() % 10**6}")
        c.remove_pod(warm)
        sid, pod = c.run_pod(f"subs-{time.time_ns() % 10**6}")
        ids = {sid}
        for i in range(3):
            cid = c.run_container(sid, pod, f"c{i}", ["true"])
            ids.add(cid)
            c.wait_exited(cid)
            c.rt.RemoveContainer(c.pb.RemoveContainerRequest(container_id=cid), timeout=30)
        c.remove_pod(sid)
        c.close()
        return ids

    a, b = _two_subscribers(h.addr, churn)
    events = 2 + 3 * 4 + 2  # sandbox CREATED, STARTED; 3 x (CREATED, STARTED, STOPPED, DELETED); STOPPED, DELETED
    print(f"\ncontainerd {h.release}: subscriber A got {a}, B got {b} of {events} events")
    if h.release == "1.7":
        assert a + b == events and a and b
    else:
        assert a == b == events
