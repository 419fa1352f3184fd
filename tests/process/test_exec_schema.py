"""process.exec objects as crisensor run writes them match their JSON Schema, field for field."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from sensor.enrich import EnrichedProcess, Enricher, exec_record
from sensor.events import Event, Pod
from sensor.output import Emitter
from sensor.process import ProcessEvent
from sensor.reorder import Released

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "sensor" / "schema" / "process-exec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class ListOut:
    """An output that keeps what is written (thread-safe enough: list.append)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, s: str) -> None:
        self.lines.append(s)

    def flush(self) -> None:
        pass


def _written(item: EnrichedProcess, late: bool = False) -> dict:
    out = ListOut()
    em = Emitter(out)  # type: ignore[arg-type]
    em.emit_records([exec_record(Released(item, late, False, 123))])
    (line,) = "".join(out.lines).splitlines()
    return json.loads(line)


def _enricher() -> Enricher:
    en = Enricher()
    en.apply(Event(type="container.created", time_ns=100, window_ns=(100, 100), observed_ns=100, container_id="c1",
                   sandbox_id="s1", name="web", attempt=0, image="img", image_ref="sha256:x", labels={"a": "b"},
                   pod=Pod("p", "ns", "uid")))
    return en


@pytest.mark.parametrize(("cid", "late", "enrichment"), [("c1", False, "ok"), ("nope", False, "unknown-container"),
                                                          ("nope", True, "late"), ("c1", True, "ok"),
                                                          (None, False, "host"), (None, True, "host")])
def test_written_execs_validate(cid: str | None, late: bool, enrichment: str) -> None:
    item = _enricher().enrich(ProcessEvent(cid, 150, 7, ("/bin/sh",), 160, ppid=1, exe="/bin/dash"))
    d = _written(item, late)
    VALIDATOR.validate(d)
    assert d["enrichment"] == enrichment and list(d)[:3] == ["v", "seq", "type"] and d["seq"] == 1


def test_schema_fields_are_the_written_fields() -> None:
    d = _written(_enricher().enrich(ProcessEvent("c1", 150, 7)))
    assert set(d) == set(SCHEMA["properties"]) == set(SCHEMA["required"])


def test_the_schema_refuses_an_ok_exec_with_a_why_and_an_unsure_one_with_data() -> None:
    d = _written(_enricher().enrich(ProcessEvent("c1", 150, 7)))
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate({**d, "why": "because"})
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate({**d, "enrichment": "unknown-container", "why": "x"})  # but still carries a name


def test_execs_and_lifecycle_events_written_from_many_threads_never_deadlock() -> None:
    """The emitter calls the pipeline under its lock; the writer must not call the emitter under the
    pipeline's: lifecycle events from two threads and execs released by the ticker, all at once."""
    import threading
    import time

    from sensor.analytics import Pipeline
    from sensor.enrich import AnalyticsStage
    from sensor.processes import ExecWriter
    from sensor.reorder import ReorderBuffer

    class Source:
        def __init__(self) -> None:
            self.ready = threading.Event()
            self.items: list[ProcessEvent] = []
            self.lock = threading.Lock()

        def poll(self, now_ns: int) -> list[ProcessEvent]:
            with self.lock:
                out, self.items = self.items, []
            return out

        def progress_ns(self) -> int:
            return 0

    out = ListOut()
    lines = out.lines
    src = Source()
    em = Emitter(out)  # type: ignore[arg-type]
    pipe = Pipeline(AnalyticsStage(ReorderBuffer(1_000_000, max_events=8)), source=src)  # tiny: overflow too
    pipe.attach(em)
    writer = ExecWriter(pipe, em, src.ready).start()
    stop = time.monotonic() + 1.5
    done = []

    def lifecycle(k: int) -> None:
        i = 0
        while time.monotonic() < stop:
            t = time.time_ns()
            em.emit([Event(type="container.created", time_ns=t, window_ns=(t, t), observed_ns=t,
                           container_id=f"c{k}-{i}", sandbox_id="s", name="n")])
            i += 1
        done.append(k)

    def execs() -> None:
        while time.monotonic() < stop:
            with src.lock:
                src.items.append(ProcessEvent("c0-1", time.time_ns(), 1))
            src.ready.set()
        done.append("x")

    threads = [threading.Thread(target=lifecycle, args=(k,), daemon=True) for k in (0, 1)]
    threads.append(threading.Thread(target=execs, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(done) == 3, "a thread is stuck: the locks were taken in both orders"  # (daemons left behind)
    writer.close()
    seqs = [json.loads(line)["seq"] for line in "".join(lines).splitlines()]
    assert seqs == sorted(seqs) and any('"process.exec"' in line for line in lines)
