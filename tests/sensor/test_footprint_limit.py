"""sensor.footprint: the memory a node needs, the limit the sensor runs under, and doctor's check."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sensor import footprint
from sensor.doctor import OK, WARN, Doctor


@given(st.integers(0, 200_000))
def test_the_limit_for_a_node_holds_that_node(n: int) -> None:
    assert footprint.max_containers(footprint.needed_bytes(n)) >= n - 1  # integer rounding


@given(st.integers(0, 2**40))
def test_the_containers_a_limit_holds_fit_in_it(limit: int) -> None:
    assert footprint.needed_bytes(footprint.max_containers(limit)) <= max(limit, footprint.needed_bytes(0))


def test_parse_limit() -> None:
    assert footprint.parse_limit("max\n") is None
    assert footprint.parse_limit("134217728\n") == 128 * 2**20
    assert footprint.parse_limit("9223372036854771712") is None  # cgroup v1: no limit


def test_memory_limit_reads_cgroup_v2_then_v1_and_the_environment_first(tmp_path: Path) -> None:
    cg = tmp_path / "cgroup"
    (tmp_path / "fs" / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "fs" / "kubepods" / "pod1" / "memory.max").write_text("268435456\n")
    cg.write_text("0::/kubepods/pod1\n")
    assert footprint.memory_limit(str(cg), str(tmp_path / "fs"), env={}) == 256 * 2**20
    assert footprint.memory_limit(str(cg), str(tmp_path / "fs"), env={"CRISENSOR_MEMORY_LIMIT": "1000"}) == 1000
    v1 = tmp_path / "v1"
    (v1 / "memory" / "kubepods").mkdir(parents=True)
    (v1 / "memory" / "kubepods" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    cg.write_text("5:memory:/kubepods\n1:name=systemd:/x\n")
    assert footprint.memory_limit(str(cg), str(v1), env={}) is None
    (v1 / "memory" / "kubepods" / "memory.limit_in_bytes").write_text("134217728\n")
    assert footprint.memory_limit(str(cg), str(v1), env={}) == 128 * 2**20
    assert footprint.memory_limit(str(tmp_path / "missing"), str(v1), env={}) is None


def test_doctor_warns_when_the_node_outgrows_the_memory_limit() -> None:
    limit = 128 * 2**20
    holds = footprint.max_containers(limit)
    small = Doctor(memory_limit=lambda: limit)._memory(holds)
    big = Doctor(memory_limit=lambda: limit)._memory(holds + 1000)
    assert small.status == OK and f"holds up to about {holds:,} containers" in small.found
    assert big.status == WARN and "OOM-killed" in big.found and "raise the DaemonSet's memory limit" in big.fix
    unlimited = Doctor(memory_limit=lambda: None)._memory(10_000)
    assert unlimited.status == OK and "no memory limit" in unlimited.found
