"""``make demo``: fakecri serves a scenario in real time; crisensor watches it; events are printed.

Forged (synthetic) events are marked with ``*`` and carry their ``why``; at the end the fake's
ground truth is shown beside what the sensor said, so the forging is easy to judge. Run
``python -m sensor.demo [SCENARIO] [--poll-interval 250ms] [--json]``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from fakecri.harness import Harness, bundled_path
from fakecri.truth import ContainerTransition, SandboxTransition
from sensor.client import CriClient
from sensor.duration import format_duration, parse_duration
from sensor.events import Event
from sensor.output import Emitter, OutputError, run_guarded, stream_name
from sensor.poller import Poller

DEFAULT_SCENARIO = "fast_exit"


def _short(e: Event, names: dict[str, str]) -> str:
    if e.container_id:
        return f"{e.pod.name if e.pod else '?'}/{e.name or names.get(e.container_id, e.container_id[:12])}"
    if e.sandbox_id:
        return e.pod.name if e.pod else e.sandbox_id[:12]
    return ""


def _fmt_offset(t_ns: int, t0: int) -> str:
    return f"{(t_ns - t0) / 1e9:+8.3f}s"


def run(scenario: str, poll_interval_ns: int, as_json: bool, out: io.TextIOBase | None = None) -> int:
    out = out or sys.stdout  # type: ignore[assignment]
    note = sys.stderr if as_json else out  # keep stdout pure JSON lines with --json
    path = Path(scenario) if Path(scenario).exists() else bundled_path(scenario)
    with tempfile.TemporaryDirectory(prefix="crisensor-demo-") as tmp:
        harness = Harness(path, socket=f"{tmp}/cri.sock", clock="real")
        events: list[Event] = []
        stop = threading.Event()
        failures: list[OutputError] = []  # the table's output failed (the emitter keeps its own)
        emitter = Emitter(out if as_json else None, on_failure=lambda _: stop.set())
        emitter.listeners.append(events.append)
        client = CriClient(harness.addr, rpc_timeout_s=2)
        poller = Poller(client, emitter, poll_interval_ns=poll_interval_ns)
        with harness:
            t0 = harness.start_ns
            print(f"# fakecri: serving {path.name} as {harness.flavor.name} on {harness.addr}", file=note)
            print(f"# crisensor: polling every {format_duration(poll_interval_ns)}; forged events are marked *",
                  file=note)
            if not as_json:
                print(f"{'SEQ':>4} {'WHEN':>9} {'TYPE':<20} {'OBJECT':<18} {'':1} {'WINDOW (ms since start)':<24} WHY",
                      file=out)
                emitter.listeners.append(lambda e: _show(e, t0, out, failures, stop))  # type: ignore[arg-type]
            worker = threading.Thread(target=poller.run, args=(stop,), name="demo-poller")
            worker.start()
            try:
                deadline = time.monotonic() + harness.end_ns / 1e9 + 30
                while not stop.is_set() and not harness.wait_end(0.1) and time.monotonic() < deadline:
                    pass
                stop.wait(2 * poll_interval_ns / 1e9)  # one more poll after the end, to see removals
            finally:
                stop.set()
                worker.join()
                client.close()
            truth = harness.truth.records()
    failure = emitter.failure or (failures[0] if failures else None)
    if failure is not None:
        raise failure  # main: a closed pipe ends quietly, a write error is one line
    if not as_json:
        _print_truth(truth, t0, out)  # type: ignore[arg-type]
    forged = sum(1 for e in events if e.synthetic)
    print(f"# {len(events)} events, {forged} forged", file=note)
    print(summary(truth, events, poll_interval_ns), file=note)
    return 0


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.0f} ms"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(truth: Sequence[object], events: Sequence[Event], poll_interval_ns: int) -> str:
    """One sentence: which containers polling never saw (and how briefly they lived), and what the
    forged events recovered between polls; every number carries its unit."""
    ids: dict[str, str] = {}  # container id -> name, in order of creation
    began: dict[str, int] = {}
    ended: dict[str, int] = {}
    for r in truth:
        if isinstance(r, ContainerTransition):
            ids.setdefault(r.container_id, r.name or r.container_id[:12])
            if r.transition in ("created", "running"):
                began.setdefault(r.container_id, r.time_ns)
            elif r.transition in ("exited", "destroyed"):
                ended[r.container_id] = r.time_ns
    seen = {e.container_id for e in events if e.container_id}
    missed = [c for c in ids if c not in seen]
    lives = [ended[c] - began[c] for c in missed if c in began and c in ended]
    interval = _ms(poll_interval_ns)
    if not missed:
        saw = f"polling every {interval} saw all {_plural(len(ids), 'container')}"
    else:
        most = "" if len(lives) == 1 else "at most "
        lived = f"lived {most}{_ms(max(lives))} (less than one poll interval)" if lives else "came and went"
        saw = (f"polling every {interval} saw {len(ids) - len(missed)} of {_plural(len(ids), 'container')}: "
               f"{_plural(len(missed), 'container')} ({', '.join(ids[c] for c in missed)}) {lived} and "
               f"{'was' if len(missed) == 1 else 'were'} never seen")
    forged = [e for e in events if e.synthetic]
    if not forged:
        return f"# summary: {saw}, and nothing fell between polls that needed a forged event."
    kinds: dict[str, int] = {}
    for e in forged:
        kinds[e.type] = kinds.get(e.type, 0) + 1
    widest = max(hi - (lo or hi) for lo, hi in (e.window_ns for e in forged))
    recovered = " and ".join(f"{n} {kind}" for kind, n in kinds.items())
    return (f"# summary: {saw}; {_plural(len(forged), 'forged event')} (marked *) recovered what happened "
            f"between polls ({recovered}), each placed within a window of at most {_ms(widest)}.")


def _print_event(e: Event, t0: int, out: io.TextIOBase) -> None:
    lo, hi = e.window_ns
    window = f"[{(lo - t0) / 1e6:.0f}, {(hi - t0) / 1e6:.0f}]" if lo else f"[-, {(hi - t0) / 1e6:.0f}]"
    mark = "*" if e.synthetic else " "
    print(f"{e.seq:>4} {_fmt_offset(e.observed_ns, t0)} {e.type:<20} {_short(e, {}):<18} {mark} {window:<24} "
          f"{e.why or ''}", file=out, flush=True)


def _show(e: Event, t0: int, out: io.TextIOBase, failures: list[OutputError], stop: threading.Event) -> None:
    """The table's listener (poll thread): a failed output stops the demo instead of the thread."""
    if failures:
        return
    try:
        _print_event(e, t0, out)
    except (OSError, OutputError) as err:
        failures.append(err if isinstance(err, OutputError) else OutputError(stream_name(out), err, what="output"))
        stop.set()


def _print_truth(truth: list, t0: int, out: io.TextIOBase) -> None:
    print("\n# ground truth (what really happened, from fakecri):", file=out)
    for r in truth:
        if isinstance(r, ContainerTransition):
            pod = r.pod.name if r.pod else "?"
            print(f"     {_fmt_offset(r.time_ns, t0)} container.{r.transition:<10} {pod}/{r.name}", file=out)
        elif isinstance(r, SandboxTransition):
            pod = r.pod.name if r.pod else r.sandbox_id[:12]
            print(f"     {_fmt_offset(r.time_ns, t0)} sandbox.{r.transition:<12} {pod}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sensor.demo", description=__doc__.splitlines()[0])
    p.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, help="bundled name or YAML path")
    p.add_argument("--poll-interval", default="250ms", help="Go duration (default 250ms)")
    p.add_argument("--json", action="store_true", help="print the raw JSON lines instead of a table")
    def body() -> int:
        args = p.parse_args(argv)
        try:
            interval = parse_duration(args.poll_interval)
            return run(args.scenario, interval, args.json)
        except (KeyError, ValueError) as e:
            print(f"demo: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
            return 2

    return run_guarded("demo", body)


if __name__ == "__main__":
    sys.exit(main())
