"""``fakecri record``: the CLI's errors, a recording's shape, and the pure normalise/compare parts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import cri_api
from fakecri.record import Difference, Names, compare, normalise

PB = cri_api.api("v1").pb2
CLI = [sys.executable, "-c", "import sys; from fakecri.cli import main; sys.exit(main())", "record"]


@pytest.mark.parametrize(("args", "says"), [
    ([], "exactly one of --flavor NAME"),
    (["--flavor", "containerd-1.7", "--addr", "unix:///x"], "exactly one of"),
    (["--flavor", "nope"], "--flavor: unknown flavor 'nope' (accepted: containerd-1.5"),
    (["--addr", "tcp://x"], "--addr: 'tcp://x' does not start with unix://"),
    (["--flavor", "containerd-1.7", "--only", "nope"], "--only: unknown sequence 'nope' (accepted: lifecycle"),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and says in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_a_recording_of_a_flavour(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rec.json"
    res = subprocess.run([*CLI, "--flavor", "containerd-2.1", "--only", "lifecycle", "-o", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    assert rec["runtime"]["runtime_version"].startswith("v2.1.") and list(rec["sequences"]) == ["lifecycle"]
    body = rec["sequences"]["lifecycle"]
    assert [s["label"] for s in body["steps"]] == ["run_pod", "create app", "start app", "wait_exited app",
                                                   "remove app", "stop_pod", "remove_pod"]
    assert all(s["outcome"] == "OK" for s in body["steps"])
    types = [(e.get("container_event_type", "CONTAINER_CREATED_EVENT"), e["container_id"]) for e in body["events"]]
    assert types == [("CONTAINER_CREATED_EVENT", "<pod>"), ("CONTAINER_STARTED_EVENT", "<pod>"),
                     ("CONTAINER_CREATED_EVENT", "<c:app>"), ("CONTAINER_STARTED_EVENT", "<c:app>"),
                     ("CONTAINER_STOPPED_EVENT", "<c:app>"), ("CONTAINER_DELETED_EVENT", "<c:app>"),
                     ("CONTAINER_STOPPED_EVENT", "<pod>"), ("CONTAINER_DELETED_EVENT", "<pod>")]
    exited = body["steps"][3]["answers"]["ContainerStatus app"]["status"]
    assert (exited["state"], exited["exit_code"], exited["reason"], exited["finished_at"]) == (
        "CONTAINER_EXITED", 3, "Error", "<t>")
    assert compare(rec, rec) == []


def test_normalise_keeps_presence_and_hides_what_differs_per_run() -> None:
    names = Names()
    cid = "a" * 64
    names.add(cid, "<c:app>")
    st = PB.ContainerStatus(id=cid, state=PB.CONTAINER_RUNNING, created_at=5, started_at=7, exit_code=0,
                            message=f"container {cid} and {'b' * 64}", log_path="/var/log/pods/x/app/0.log")
    got = normalise(st, names)
    assert got == {"id": "<c:app>", "state": "CONTAINER_RUNNING", "created_at": "<t>", "started_at": "<t>",
                   "message": "container <c:app> and <id>", "log_path": "0.log"}  # finished_at unset: absent


def test_compare_reports_event_lists_then_fields() -> None:
    ev = {"container_event_type": "CONTAINER_STOPPED_EVENT", "container_id": "<c:a>", "created_at": "<t>"}
    a = {"sequences": {"s": {"events": [ev], "steps": [{"label": "x", "outcome": "OK", "answers": {"k": 1}}]}}}
    b = json.loads(json.dumps(a))
    b["sequences"]["s"]["events"][0]["pod_sandbox_status"] = {"state": "SANDBOX_NOTREADY"}
    b["sequences"]["s"]["steps"][0]["answers"]["k"] = 2
    diffs = compare(a, b)
    assert [d.where for d in diffs] == ["events (type, id, statuses)", "after x.k"]
    assert isinstance(diffs[0], Difference) and "no pod_sandbox_status" in str(diffs[0])


def test_a_pods_containers_removed_together_may_come_in_any_order() -> None:
    """RemovePodSandbox deletes a pod's containers in Go map order (varies per run on real 1.7)."""
    def ev(kind: str, cid: str, n: int) -> dict:  # type: ignore[type-arg]
        return {"container_event_type": kind, "container_id": cid,
                "containers_statuses": [{"metadata": {"name": str(k)}} for k in range(n)]}

    a = [ev("CONTAINER_STOPPED_EVENT", "<pod>", 2), ev("CONTAINER_DELETED_EVENT", "<c:a>", 1),
         ev("CONTAINER_DELETED_EVENT", "<c:b>", 0)]
    b = [a[0], ev("CONTAINER_DELETED_EVENT", "<c:b>", 1), ev("CONTAINER_DELETED_EVENT", "<c:a>", 0)]
    rec = {"sequences": {"s": {"events": a, "steps": []}}}
    assert compare(rec, {"sequences": {"s": {"events": b, "steps": []}}}) == []
    c = [a[0], ev("CONTAINER_STOPPED_EVENT", "<c:b>", 1), ev("CONTAINER_DELETED_EVENT", "<c:a>", 0)]
    assert [d.where for d in compare(rec, {"sequences": {"s": {"events": c, "steps": []}}})] == [
        "events (type, id, statuses)"]
