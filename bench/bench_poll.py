"""Benchmark: the sensor's CPU per poll at 100 / 1,000 / 10,000 containers (DESIGN.md section 7
targets: <= 1 ms at 1,000 and <= 5 ms at 10,000 in steady state).

    python -m bench.bench_poll [--sizes 100,1000,10000] [--polls N] [--churn-polls M] [--churn-pct P] [--json FILE]

A fakecri node runs in a child process (its own CPU is not the sensor's), serving a RealClock model
filled by ``fakecri.kubelet.populate`` (kubelet-shaped labels and annotations, pods of N/100
containers) on a unix socket. This process is the sensor: one ``CriClient`` and two diff engines
that take turns on the same answers:

* ``fast``: ``sensor.fastpath.FastPath`` -- the poller's default;
* ``naive``: ``sensor.fastpath.PlainPath`` -- decode every entry, build every snapshot value, and
  ``DiffEngine.begin`` on the whole list (the CRI client's plain ``list()``).

A poll is ListContainers + ListPodSandbox over the socket, decoding, ``begin``, ContainerStatus for
what the engine asks, and ``finish``. The measure is the CPU time of this whole process
(``time.process_time``: user + system, every thread, gRPC's included) from the first list request
to the end of ``finish``, without the ContainerStatus calls, which both paths make alike and which
are reported in a column of their own. Each row is the median over its polls.

* ``steady``: nothing changes between polls (the common case); each path polls in a run of its own,
  so that collecting the naive path's garbage does not land in the fast path's polls;
* ``churn``: before each poll the node ends ``P``% of its containers (exit; removed one poll
  later) and starts as many new ones, so ~3P% of the entries differ from the last poll.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import write_result

DEFAULT_JSON = Path(__file__).parent / "results" / "poll.json"
TARGET_MS = {1000: 1.0, 10000: 5.0}


# --- the node (child process) ----------------------------------------------------------------------


class Node:
    """A fakecri model + server with a kubelet-shaped population, and a churn the parent steps."""

    def __init__(self, containers: int, socket_path: str, flavor: str = "containerd-1.7") -> None:
        from fakecri.clock import RealClock
        from fakecri.flavors import get_flavor
        from fakecri.kubelet import populate
        from fakecri.model import RuntimeModel
        from fakecri.server import FakeCriServer

        self.model = RuntimeModel(RealClock(), get_flavor(flavor), seed=1)
        self.server = FakeCriServer(self.model, socket_path).start()
        pods = min(100, containers)
        populate(self.model, containers, per_pod=-(-containers // pods))
        self.running: collections.deque[str] = collections.deque(
            c.id for c in self.model.containers.values() if c.state == "running")
        self.exited: list[str] = []
        self.sandboxes = [s.id for s in self.model.sandboxes.values()]
        self.made = 0

    def churn(self, n: int) -> int:
        """Remove the containers exited last round, end ``n`` running ones, start ``n`` new ones."""
        m = self.model
        changes = 0
        with m.lock:
            for cid in self.exited:
                m.remove_container(cid)
                changes += 1
            self.exited = []
            for _ in range(min(n, len(self.running))):
                cid = self.running.popleft()
                m.exit_container(cid, 0)
                self.exited.append(cid)
                changes += 1
            for _ in range(n):
                sid = self.sandboxes[self.made % len(self.sandboxes)]
                c = m.create_container(sid, f"churn-{self.made}", 0, "busybox",
                                       labels={"io.kubernetes.container.name": f"churn-{self.made}"})
                m.start_container(c.id)
                self.running.append(c.id)
                self.made += 1
                changes += 1
        return changes

    def stop(self) -> None:
        self.server.stop(grace=None)


def node_main(conn: Any, containers: int, socket_path: str) -> None:
    """Child process: build the node, then obey ``(command, arg)`` messages until ``stop``."""
    node = Node(containers, socket_path)
    conn.send(("ready", len(node.model.containers)))
    while True:
        cmd, arg = conn.recv()
        if cmd == "churn":
            conn.send(("ok", node.churn(arg)))
        elif cmd == "stop":
            node.stop()
            conn.send(("ok", None))
            return


class NodeProcess:
    """The parent's handle on a node child process."""

    def __init__(self, containers: int, target: Any = None) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-node-")
        self.socket = os.path.join(self._dir, "cri.sock")
        ctx = mp.get_context("spawn")  # gRPC does not survive fork
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target or node_main, args=(child, containers, self.socket), daemon=True)
        self.proc.start()
        status, self.size = self.conn.recv()
        assert status == "ready"

    @property
    def addr(self) -> str:
        return f"unix://{self.socket}"

    def call(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        status, value = self.conn.recv()
        assert status == "ok", value
        return value

    def close(self) -> None:
        try:
            self.call("stop")
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)


# --- the sensor side --------------------------------------------------------------------------------


class Side:
    """One diff engine and its way of taking lists, polling through a shared client."""

    def __init__(self, name: str, client: Any) -> None:
        from sensor.diff import DiffEngine
        from sensor.fastpath import FastPath, PlainPath

        self.name = name
        self.client = client
        self.engine = DiffEngine()
        self.lists: Any = FastPath() if name == "fast" else PlainPath()

    def poll(self) -> dict[str, float]:
        """One poll; CPU (process) and wall seconds per phase, and the event count."""
        client, engine = self.client, self.engine
        c0, w0 = time.process_time(), time.perf_counter()
        listing = self.lists.list(client)
        c1 = time.process_time()
        need = self.lists.begin(engine, listing, client.pb)
        c2 = time.process_time()
        details, err = client.status(need) if need else ({}, None)
        if err is not None:
            raise RuntimeError(f"status failed: {err}")
        c3 = time.process_time()
        events = engine.finish(details, time.time_ns())
        c4, w4 = time.process_time(), time.perf_counter()
        return {"cpu": (c2 - c0) + (c4 - c3), "list": c1 - c0, "begin": c2 - c1, "status": c3 - c2,
                "finish": c4 - c3, "wall": w4 - w0, "events": len(events), "need": len(need)}


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def run_size(n: int, polls: int, churn_polls: int, churn_pct: float) -> dict[str, Any]:
    from sensor.client import CriClient

    node = NodeProcess(n)
    client = CriClient(node.addr, rpc_timeout_s=60)
    try:
        client.connect()
        sides = [Side("fast", client), Side("naive", client)]
        for s in sides:  # first list: both decode everything (not measured)
            s.poll()
        out: dict[str, Any] = {"containers": node.size}
        steady: dict[str, list[dict[str, float]]] = {s.name: [] for s in sides}
        naive_polls = max(3, polls // 4) if n >= 10000 else polls
        for s in sides:  # one path after the other: the naive path's garbage is not collected in fast polls
            for _ in range(naive_polls if s.name == "naive" else polls):
                steady[s.name].append(s.poll())
        churn: dict[str, list[dict[str, float]]] = {s.name: [] for s in sides}
        per_round = max(1, round(n * churn_pct / 100))
        changes = []
        for _ in range(churn_polls):
            changes.append(node.call("churn", per_round))
            for s in sides:
                churn[s.name].append(s.poll())
        for case, rows in (("steady", steady), ("churn", churn)):
            res: dict[str, Any] = {}
            for name, rs in rows.items():
                res[name] = {k: _median(rs, k) for k in ("cpu", "list", "begin", "status", "finish", "wall",
                                                           "events", "need")}
                res[name]["polls"] = len(rs)
                res[name]["cpu_p90"] = statistics.quantiles([r["cpu"] for r in rs], n=10)[-1] if len(rs) > 2 else None
            res["ratio"] = res["naive"]["cpu"] / res["fast"]["cpu"] if res["fast"]["cpu"] else None
            out[case] = res
        out["churn"]["changes_per_poll"] = statistics.median(changes) if changes else 0
        out["fast_path_levels"] = dict(sides[0].lists.counts)
        return out
    finally:
        client.close()
        node.close()


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    import google.protobuf
    import grpc
    from google.protobuf.internal import api_implementation

    return {"nproc": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0], "platform": platform.platform(),
            "protobuf": f"{google.protobuf.__version__} ({api_implementation.Type()})", "grpcio": grpc.__version__,
            "loadavg": load}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_poll", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="containers on the node (default 100,1000,10000)")
    ap.add_argument("--polls", type=int, default=40, help="steady-state polls per path (default 40; the naive "
                                                           "path does a quarter of them at 10,000)")
    ap.add_argument("--churn-polls", type=int, default=20, help="polls with churn per path (default 20)")
    ap.add_argument("--churn-pct", type=float, default=1.0,
                    help="containers ended and started per poll, in %% of the node (default 1)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result: dict[str, Any] = {"benchmark": "poll", "machine": machine(), "churn_pct": args.churn_pct,
                              "target_ms": TARGET_MS, "sizes": {}}
    m = result["machine"]
    print(f"sensor CPU per poll (process CPU, median; ContainerStatus calls separate) -- {m['nproc']} x {m['cpu']}, "
          f"Python {m['python']}, protobuf {m['protobuf']}, grpcio {m['grpcio']}")
    print(f"{'containers':>10} {'case':>7} {'fast ms':>8} {'naive ms':>9} {'ratio':>6} {'target':>7} "
          f"{'status ms':>9} {'events':>7}  fast: list/begin/finish ms")
    for n in sizes:
        r = run_size(n, args.polls, args.churn_polls, args.churn_pct)
        result["sizes"][str(n)] = r
        for case in ("steady", "churn"):
            c = r[case]
            f, nv = c["fast"], c["naive"]
            target = f"{TARGET_MS[n]:.0f} ms" if n in TARGET_MS and case == "steady" else "-"
            ratio = f"{c['ratio']:.1f}x" if c["ratio"] else "-"
            print(f"{n:>10,} {case:>7} {f['cpu'] * 1e3:>8.2f} {nv['cpu'] * 1e3:>9.2f} {ratio:>6} {target:>7} "
                  f"{f['status'] * 1e3:>9.2f} {f['events']:>7.0f}  "
                  f"{f['list'] * 1e3:.2f}/{f['begin'] * 1e3:.2f}/{f['finish'] * 1e3:.2f}")
        sys.stdout.flush()
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
