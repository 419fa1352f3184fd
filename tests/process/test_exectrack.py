"""The exec tracker: attribution at exec, the fork parent for the short-lived, forgetting on exit."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import event, example, given
from hypothesis import strategies as st

from sensor.cnproc import Exec, Exit, Fork, Malformed, Overrun, Unknown
from sensor.exectrack import ExecTracker

A = "a" * 64
B = "b" * 64


def cg(cid: str | None) -> str:
    return "0::/\n" if cid is None else f"4:memory:/k8s.io/{cid}\n0::/k8s.io/{cid}\n"


@dataclass
class FakeProc:
    """/proc as a dict: pid -> (container or None for the host, argv, exe)."""

    procs: dict[int, tuple[str | None, tuple[str, ...], str]] = field(default_factory=dict)
    cmdline_reads: int = 0
    cgroup_reads: int = 0

    def cgroup(self, pid: int) -> str | None:
        self.cgroup_reads += 1
        p = self.procs.get(pid)
        return None if p is None else cg(p[0])

    def cmdline(self, pid: int) -> tuple[str, ...] | None:
        self.cmdline_reads += 1
        p = self.procs.get(pid)
        return None if p is None else p[1]

    def exe(self, pid: int) -> str | None:
        p = self.procs.get(pid)
        return None if p is None else p[2]


def fork(parent: int, child: int, t: int = 1) -> Fork:
    return Fork(mono_ns=t, cpu=0, parent_pid=parent, parent_tgid=parent, child_pid=child, child_tgid=child)


def exe(pid: int, t: int = 2) -> Exec:
    return Exec(mono_ns=t, cpu=0, pid=pid, tgid=pid)


def exit_(pid: int) -> Exit:
    return Exit(mono_ns=9, cpu=0, pid=pid, tgid=pid, exit_code=0, exit_signal=17, parent_pid=1, parent_tgid=1)


def test_an_exec_in_a_container_is_attributed_and_timed_on_the_wall_clock() -> None:
    proc = FakeProc({10: (A, ("/bin/sh", "-c", "x"), "/bin/sh")})
    t = ExecTracker(proc, lambda mono: mono + 1_000)
    t.feed(fork(1, 10), 50)
    ev = t.feed(exe(10, t=7), 99)
    assert ev is not None
    assert (ev.container_id, ev.pid, ev.ppid, ev.argv, ev.exe, ev.time_ns, ev.observed_ns) == (
        A, 10, 1, ("/bin/sh", "-c", "x"), "/bin/sh", 1_007, 99)


def test_a_process_gone_before_it_is_read_takes_its_fork_parents_container() -> None:
    proc = FakeProc({10: (A, ("sh",), "/bin/sh")})
    t = ExecTracker(proc)
    t.feed(exe(10), 0)  # the shell execs: read and cached
    t.feed(fork(10, 11), 0)
    ev = t.feed(exe(11), 0)  # /bin/echo, already gone
    assert ev is not None and ev.container_id == A and ev.ppid == 10 and ev.argv == () and ev.exe is None
    assert t.counts["inherited"] == 1


def test_a_child_of_a_container_process_inherits_without_a_cgroup_read() -> None:
    proc = FakeProc({10: (A, ("sh",), "/bin/sh"), 11: (A, ("ls",), "/bin/ls")})
    t = ExecTracker(proc)
    t.feed(exe(10), 0)
    t.feed(fork(10, 11), 0)
    before = proc.cgroup_reads
    ev = t.feed(exe(11), 0)
    assert ev is not None and (ev.container_id, ev.argv, ev.exe) == (A, ("ls",), "/bin/ls")
    assert proc.cgroup_reads == before
    t.feed(fork(11, 12), 0)  # and its children in turn
    proc.procs[12] = (A, ("cat",), "/bin/cat")
    assert t.feed(exe(12), 0).container_id == A and proc.cgroup_reads == before  # type: ignore[union-attr]


def test_a_child_of_a_host_process_is_always_read() -> None:
    """runc (on the host) forks the process it moves into the container before it execs."""
    proc = FakeProc({1: (None, ("runc",), "/usr/sbin/runc"), 20: (A, ("nginx",), "/usr/sbin/nginx")})
    t = ExecTracker(proc)
    t.feed(exe(1), 0)
    t.feed(fork(1, 20), 0)
    ev = t.feed(exe(20), 0)
    assert ev is not None and ev.container_id == A and proc.cgroup_reads == 2


def test_the_parent_is_read_live_when_it_never_execd_in_view() -> None:
    proc = FakeProc({10: (B, ("runc",), "/runc")})
    t = ExecTracker(proc)
    t.feed(fork(10, 11), 0)
    ev = t.feed(exe(11), 0)
    assert ev is not None and ev.container_id == B


def test_gone_with_no_known_parent_is_counted_not_guessed() -> None:
    t = ExecTracker(FakeProc())
    assert t.feed(exe(11), 0) is None
    t.feed(fork(10, 12), 0)  # parent 10 is gone too
    assert t.feed(exe(12), 0) is None
    assert t.counts["gone"] == 2 and t.counts["emitted"] == 0


def test_host_processes_are_dropped_and_counted_unless_kept() -> None:
    proc = FakeProc({5: (None, ("bash",), "/bin/bash")})
    dropping = ExecTracker(proc)
    assert dropping.feed(exe(5), 0) is None
    assert dropping.counts["host"] == 1 and proc.cmdline_reads == 0  # dropped before reading more
    t = ExecTracker(proc, keep_host=True)
    ev = t.feed(exe(5), 0)
    assert ev is not None and ev.container_id is None


def test_threads_do_not_become_fork_children() -> None:
    t = ExecTracker(FakeProc({10: (A, (), "")}))
    t.feed(Fork(mono_ns=0, cpu=0, parent_pid=10, parent_tgid=10, child_pid=11, child_tgid=10), 0)
    assert t.parents == {}


def test_exit_forgets_so_a_reused_pid_is_not_attributed_to_the_old_container() -> None:
    proc = FakeProc({10: (A, ("sh",), "/bin/sh")})
    t = ExecTracker(proc)
    t.feed(exe(10), 0)
    t.feed(fork(10, 11), 0)
    t.feed(exit_(10), 0)
    del proc.procs[10]
    # PID 10 is reused by a process in B, which forks 12 and 12 is gone at its exec:
    proc.procs[10] = (B, ("x",), "/x")
    t.feed(fork(10, 12), 0)
    ev = t.feed(exe(12), 0)
    assert ev is not None and ev.container_id == B


def test_a_parent_that_exited_is_not_read_live_under_its_reused_pid() -> None:
    proc = FakeProc({10: (A, ("runc",), "/runc")})
    t = ExecTracker(proc)
    t.feed(fork(10, 11), 0)  # 10 never exec'd in view: nothing cached at the fork
    t.feed(exit_(10), 0)
    proc.procs[10] = (B, ("other",), "/other")  # PID 10 reused by a process in B
    assert t.feed(exe(11), 0) is None  # 11 is gone: its parent cannot be read any more
    assert t.counts["gone"] == 1


def test_a_parent_known_at_the_fork_still_stands_in_after_it_exited() -> None:
    proc = FakeProc({10: (A, ("sh",), "/bin/sh")})
    t = ExecTracker(proc)
    t.feed(exe(10), 0)
    t.feed(fork(10, 11), 0)
    t.feed(exit_(10), 0)
    proc.procs[10] = (B, ("other",), "/other")
    ev = t.feed(exe(11), 0)
    assert ev is not None and ev.container_id == A


def test_lost_messages_forget_every_cached_attribution() -> None:
    proc = FakeProc({10: (A, ("sh",), "/bin/sh")})
    t = ExecTracker(proc)
    t.feed(exe(10), 0)
    t.feed(fork(10, 11), 0)
    t.feed(Overrun(), 0)  # the exit of 10 may have been lost: its PID may be someone else's now
    del proc.procs[10]
    assert t.feed(exe(11), 0) is None
    assert t.counts["overruns"] == 1 and t.counts["gone"] == 1


def test_other_messages_are_counted() -> None:
    t = ExecTracker(FakeProc())
    for m in (Malformed(0, "x"), Unknown(0x200), Unknown(-1)):
        assert t.feed(m, 0) is None
    assert (t.counts["malformed"], t.counts["unknown"]) == (1, 2)


def test_a_long_lived_parent_keeps_only_its_live_children() -> None:
    t = ExecTracker(FakeProc())
    for child in range(100, 1100):
        t.feed(fork(1, child), 0)
        t.feed(exit_(child), 0)
    assert t.children[1] == set() and t.parents == {}


def test_tables_are_bounded() -> None:
    t = ExecTracker(FakeProc(), max_tracked=8)
    for child in range(100, 200):
        t.feed(fork(1, child), 0)
    assert len(t.parents) == 8 and min(t.parents) == 192
    for parent in range(300, 400):
        t.feed(fork(parent, parent + 1000), 0)
    assert len(t.children) == 8


@given(st.lists(st.tuples(st.sampled_from(["fork", "exec", "exit", "die", "reuse"]), st.integers(1, 4),
                          st.integers(1, 4)), max_size=60))
@example([("reuse", 1, 1), ("fork", 1, 2), ("fork", 2, 3), ("exit", 2, 2), ("reuse", 2, 2), ("die", 3, 3)])
def test_never_attributed_to_a_container_the_process_or_its_live_parent_was_not_in(ops: list) -> None:
    """G10 at the tracker: every exec's container is its own (if readable) or its fork parent's at the
    time of the parent's last read -- and never from a PID whose exit was seen."""
    proc = FakeProc()
    t = ExecTracker(proc)
    truth: dict[int, str] = {}  # pid -> container of the *current* process with that pid
    parent_of: dict[int, int] = {}
    generation = 0
    via_parent: list[int] = []
    for op, a, b in ops:
        if op == "fork" and a in proc.procs and a != b and b not in proc.procs:
            proc.procs[b] = proc.procs[a]
            truth[b] = truth[a]
            parent_of[b] = a
            t.feed(fork(a, b), 0)
        elif op == "exec" and a in truth:
            ev = t.feed(exe(a), 0)
            if a in proc.procs:
                assert ev is not None and ev.container_id == truth[a]
        elif op == "exit" and a in proc.procs:
            del proc.procs[a]
            t.feed(exit_(a), 0)
            truth.pop(a, None)
        elif op == "die" and a in proc.procs:
            del proc.procs[a]  # gone, its exit not seen yet: an exec of it reads the parent
            ev = t.feed(exe(a), 0)
            assert ev is None or ev.container_id == truth[a]  # never another container's (G10)
            if ev is not None:
                via_parent.append(a)
            t.feed(exit_(a), 0)
            truth.pop(a, None)
        elif op == "reuse" and a not in proc.procs and a not in truth:
            generation += 1
            cid = f"{generation % 10}" * 64
            proc.procs[a] = (cid, (), "")
            truth[a] = cid
            parent_of.pop(a, None)
            t.feed(exe(a), 0)
    event(f"attributed through the fork parent: {bool(via_parent)}")
