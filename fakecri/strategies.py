"""Hypothesis strategies that build valid ``Scenario`` values (the same model the YAML loader builds).

    from hypothesis import given
    from fakecri.strategies import scenarios

    @given(scenarios())
    def test_my_sensor(s): ...

Timelines are drawn by walking a symbolic runtime forward, choosing only steps that are legal
at that moment, so every drawn scenario passes ``fakecri.scenario.expand``; shrinking keeps them
legal because each choice is drawn from what the state allows. Needs hypothesis (a test extra).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from fakecri import scenario as sc
from fakecri.flavors import FLAVORS, get_flavor

MS = 1_000_000

#: Fault parameters that keep a served scenario quick (hangs are bounded to 200 ms).
_FAULT_PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "latency": st.builds(lambda ms: {"ms": float(ms)}, st.integers(0, 5)),
    "hang": st.just({"max": 200 * MS}),
    "unavailable": st.one_of(st.just({}), st.builds(lambda n: {"count": n}, st.integers(1, 3))),
    "id_reuse": st.one_of(st.just({}), st.builds(lambda n: {"count": n}, st.integers(1, 3))),
    "duplicate_ids": st.sampled_from([{}, {"lists": ["containers"]}, {"lists": ["sandboxes"]}]),
    "missing_metadata": st.just({}),
    "zero_timestamps": st.just({}),
    "future_timestamps": st.just({}),
    "notfound_race": st.one_of(st.just({}), st.builds(lambda n: {"count": n}, st.integers(1, 3))),
}
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8).filter(
    lambda s: s[0].isalpha())


def distributions() -> st.SearchStrategy[sc.Distribution]:
    ns = st.integers(0, 300).map(lambda m: m * MS)
    return st.one_of(
        ns.map(lambda v: sc.Distribution(kind="fixed", value_ns=v)),
        st.tuples(ns, ns).map(lambda p: sc.Distribution(kind="uniform", lo_ns=min(p), hi_ns=max(p))),
        ns.map(lambda v: sc.Distribution(kind="exponential", value_ns=v)),
    )


@st.composite
def scenarios(draw: st.DrawFn, *, flavors: tuple[str, ...] | None = None, max_steps: int = 25,
              faults: tuple[str, ...] | None = None, handshakes: tuple[str, ...] = sc.HANDSHAKES,
              generators: bool = True) -> sc.Scenario:
    """Valid scenarios. ``faults`` limits which faults may appear (default: all)."""
    flavor = draw(st.sampled_from(flavors or tuple(FLAVORS)))
    fl = get_flavor(flavor)
    fault_names = tuple(faults if faults is not None else sc.FAULTS)
    apis = draw(st.none() | st.sampled_from([("v1",), ("v1alpha2",), ("v1", "v1alpha2")]))
    events = draw(st.none() | st.sampled_from(sc.EVENTS_MODES))
    quirk_faults = draw(st.dictionaries(st.sampled_from(fault_names), st.just(None), max_size=2)) if fault_names else {}
    quirk_faults = {k: draw(_FAULT_PARAMS[k]) for k in quirk_faults}
    quirks = sc.Quirks(handshake=draw(st.sampled_from(handshakes)), apis=apis, events=events, faults=quirk_faults)
    eff_events = events or fl.events
    eff_apis = apis or fl.apis

    pods: dict[str, str] = {}
    containers: dict[str, tuple[str, str]] = {}
    active = set(quirk_faults)
    steps: list[sc.Step] = []
    processes: list[sc.Process] = []
    restarted = False
    t = 0
    serial = 0
    for _ in range(draw(st.integers(0, max_steps))):
        t += draw(st.integers(0, 300)) * MS
        options = ["run_pod"]
        if pods:
            options += ["stop_pod", "remove_pod"]
        if any(v == "ready" for v in pods.values()):
            options.append("create")
        states = {s for s, _ in containers.values()}
        startable = sorted(c for c, (s, p) in containers.items() if s == "created" and pods.get(p) == "ready")
        if startable:
            options.append("start")
        if "running" in states:
            options += ["exit", "stop", "process"]
        if containers:
            options.append("remove")
        options.append("restart_runtime")
        if set(fault_names) - active:
            options.append("fault_start")
        if active - set(quirk_faults):
            options.append("fault_stop")
        if eff_events in ("stream", "stream-then-closed") and "v1" in eff_apis:
            options.append("close_event_streams")
        action = draw(st.sampled_from(options))
        serial += 1
        if action == "run_pod":
            name = f"p{serial}"
            labels = draw(st.dictionaries(_NAMES, _NAMES, max_size=2))
            steps.append(sc.RunPod(at_ns=t, pod=name, labels=labels))
            pods[name] = "ready"
        elif action in ("stop_pod", "remove_pod"):
            name = draw(st.sampled_from(sorted(pods)))
            if action == "stop_pod":
                steps.append(sc.StopPod(at_ns=t, pod=name))
                pods[name] = "notready"
                for c, (s, p) in list(containers.items()):
                    if p == name and s == "running":
                        containers[c] = ("exited", p)
            else:
                steps.append(sc.RemovePod(at_ns=t, pod=name))
                del pods[name]
                containers = {c: v for c, v in containers.items() if v[1] != name}
        elif action == "create":
            pod = draw(st.sampled_from(sorted(p for p, s in pods.items() if s == "ready")))
            name = f"c{serial}"
            start = draw(st.booleans())
            steps.append(sc.CreateContainer(at_ns=t, container=name, pod=pod, start=start,
                                            labels=draw(st.dictionaries(_NAMES, _NAMES, max_size=2))))
            containers[name] = ("running" if start else "created", pod)
        elif action == "start":
            name = draw(st.sampled_from(startable))
            steps.append(sc.StartContainer(at_ns=t, container=name))
            containers[name] = ("running", containers[name][1])
        elif action in ("exit", "stop", "process"):
            name = draw(st.sampled_from(sorted(c for c, (s, _) in containers.items() if s == "running")))
            if action == "process":
                argv = tuple(draw(st.lists(_NAMES, min_size=1, max_size=3)))
                processes.append(sc.Process(at_ns=t, container=name, argv=argv,
                                            delay_ns=draw(st.integers(0, 50)) * MS))
                t += MS  # processes sort after steps at the same instant: keep later steps later
                continue
            if action == "exit":
                code = draw(st.sampled_from([0, 1, 2, 137]))
                reason = draw(st.sampled_from([None, "OOMKilled"])) if code == 137 else None
                steps.append(sc.ExitContainer(at_ns=t, container=name, code=code, reason=reason))
            else:
                steps.append(sc.StopContainer(at_ns=t, container=name))
            containers[name] = ("exited", containers[name][1])
        elif action == "remove":
            name = draw(st.sampled_from(sorted(containers)))
            steps.append(sc.RemoveContainer(at_ns=t, container=name))
            del containers[name]
        elif action == "restart_runtime":
            downtime = draw(st.integers(1, 500)) * MS
            keep = draw(st.booleans())
            steps.append(sc.RestartRuntime(at_ns=t, downtime_ns=downtime, keep_state=keep))
            restarted = True
            if not keep:
                pods.clear()
                containers.clear()
            t += downtime  # nothing but exits may happen while it is down; keep it simple
        elif action == "fault_start":
            name = draw(st.sampled_from(sorted(set(fault_names) - active)))
            steps.append(sc.FaultStart(at_ns=t, fault=name, params=draw(_FAULT_PARAMS[name])))
            active.add(name)
        elif action == "fault_stop":
            name = draw(st.sampled_from(sorted(active - set(quirk_faults))))
            steps.append(sc.FaultStop(at_ns=t, fault=name))
            active.discard(name)
        else:
            steps.append(sc.CloseEventStreams(at_ns=t))

    gens: list[sc.Generator] = []
    if generators and not restarted and draw(st.booleans()):
        if draw(st.booleans()):
            existing = draw(st.booleans())
            gens.append(sc.LargeNode(at_ns=0 if existing else t, existing=existing,
                                     containers=draw(st.integers(1, 20)), pods=draw(st.integers(1, 3))))
        else:
            gens.append(sc.Churn(start_ns=t, duration_ns=draw(st.integers(1, 1000)) * MS,
                                 rate=float(draw(st.integers(1, 50))), lifetime=draw(distributions()),
                                 removal_delay=draw(distributions()),
                                 arrivals=draw(st.sampled_from(["poisson", "regular"])),
                                 exit_codes=draw(st.sampled_from([((0, 1.0),), ((0, 3.0), (1, 1.0))])),
                                 pods=draw(st.integers(1, 3))))
    end = draw(st.none() | st.integers(0, 1000).map(lambda m: t + m * MS))
    return sc.Scenario(name="drawn", flavor=flavor, seed=draw(st.integers(0, 2**32)), quirks=quirks,
                       timeline=tuple(steps), generators=tuple(gens), processes=tuple(processes), end_ns=end)
