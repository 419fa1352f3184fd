"""docs/install.md stays true: its configuration table, its error messages and its paths come from the code.

Error messages are produced for real where that is cheap (config errors, a missing socket, a stale
socket, a gRPC server without the CRI); the poll loop's messages are matched against the f-string
templates in sensor/poller.py, parsed with ``ast``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import socket
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from sensor import cli
from sensor.client import ConnectError, CriClient
from sensor.config import ConfigError, SensorConfig, load_config
from sensor.doctor import CHECKS
from sensor.duration import format_duration

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "install.md").read_text()


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert m, f"docs/install.md has no section {title!r}"
    return m.group(1)


def config_rows() -> dict[str, list[str]]:
    rows = {}
    for line in section("Configuration").splitlines():
        m = re.match(r"\| `([^`]+)`", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    return rows


def accepted_keys(tmp_path: Path) -> list[str]:
    """The keys the loader accepts, from its own 'unknown key' error."""
    f = tmp_path / "s.yaml"
    f.write_text("crisensor:\n  no_such_key: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(f), None, env={})
    return [k.strip() for k in (err.value.accepted or "").split(",")]


def test_configuration_table_lists_every_key_with_its_default(tmp_path: Path) -> None:
    rows = config_rows()
    keys = accepted_keys(tmp_path)
    assert len(keys) >= 8
    for key in [*keys, "event_reorder_window"]:
        assert key in rows, f"docs/install.md's configuration table lacks {key}"
    d = SensorConfig()
    expected = {
        "crisensor.enabled": "false", "crisensor.poll_interval": format_duration(d.poll_interval_ns),
        "crisensor.handshake": d.handshake, "crisensor.events": d.events,
        "crisensor.max_recv_bytes": str(d.max_recv_bytes), "crisensor.rpc_timeout": format_duration(d.rpc_timeout_ns),
        "crisensor.resync_interval": format_duration(d.resync_interval_ns),
        "event_reorder_window": format_duration(d.event_reorder_window_ns),
    }
    for key, default in expected.items():
        assert f"`{default}`" in rows[key][2], f"{key}: the doc says default {rows[key][2]}, the code {default}"


def test_doctor_checks_are_all_documented() -> None:
    table = section("`crisensor doctor`")
    documented = re.findall(r"^\| `([^`]+)` \|", table, re.M)
    assert documented == list(CHECKS)


def _headings() -> list[str]:
    return re.findall(r"^### `(.+)`$", section("Troubleshooting"), re.M)


def _quoted(message: str) -> None:
    text = DOC.replace("\n", " ")
    assert message in text, f"docs/install.md does not quote the message the sensor prints:\n{message}"


def test_missing_socket_message_is_documented(tmp_path: Path) -> None:
    path = "/var/run/crio/crio.sock"
    if Path(path).exists():
        pytest.skip(f"{path} exists on this machine")
    with pytest.raises(ConnectError) as err:
        CriClient(f"unix://{path}").connect()
    _quoted(f"crisensor: {err.value}; retrying")


def _connect_error(addr: str, **kw: float) -> str:
    with pytest.raises(ConnectError) as err:
        CriClient(addr, **kw).connect()  # type: ignore[arg-type]
    return str(err.value)


def test_stale_socket_message_is_documented(tmp_path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "stale.sock"))  # never listens: connection refused
    try:
        message = _connect_error(f"unix://{tmp_path}/stale.sock", rpc_timeout_s=0.3)
    finally:
        s.close()
    assert message.startswith("connection error: nothing is listening on ")
    assert any(h.startswith("crisensor: connection error: nothing is listening on ") for h in _headings())


def test_not_a_socket_message_is_documented(tmp_path: Path) -> None:
    (tmp_path / "file.sock").write_text("")
    message = _connect_error(f"unix://{tmp_path}/file.sock")
    assert message.endswith(" is not a unix socket (check crisensor.addr)")
    assert any(h.endswith(" is not a unix socket (check crisensor.addr); retrying") for h in _headings())


def test_deadline_message_is_documented(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(4)  # accepts, then says nothing: the HTTP/2 preface never comes
    try:
        message = _connect_error(f"unix://{tmp_path}/silent.sock", rpc_timeout_s=0.3)
    finally:
        silent.close()
    _quoted(f"crisensor: {message}; retrying")


def test_not_a_cri_runtime_message_is_documented(tmp_path: Path) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # serves no CRI service at all
    addr = f"unix://{tmp_path}/plain.sock"
    server.add_insecure_port(addr)
    server.start()
    try:
        with pytest.raises(ConnectError) as err:
            CriClient(addr, rpc_timeout_s=2).connect()
    finally:
        server.stop(None)
    prefix = str(err.value).split("(")[0]
    assert prefix == "runtime speaks none of the CRI API versions v1, v1alpha2 "
    assert any(h.startswith(f"crisensor: {prefix}(") for h in _headings())


def test_disabled_message_is_documented(tmp_path: Path) -> None:
    cfg = tmp_path / "capsule8-sensor.yaml"
    cfg.write_text("crisensor:\n  enabled: false\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["run", "--config", str(cfg)]) == 0
    line = err.getvalue().strip().splitlines()[-1]
    _quoted(line.replace(str(cfg), "/etc/capsule8/capsule8-sensor.yaml"))


@pytest.mark.parametrize(("text", "env"), [
    ("crisensor:\n  enabled: true\n  addr: /var/run/crio/crio.sock\n", {}),
    ("crisensor:\n  enabled: true\n  addr: unix:///x.sock\n  poll_interval: 250\n", {}),
    ("crisensor:\n  enabled: true\n  addr: unix:///x.sock\n", {"GRPC_GO_REQUIRE_HANDSHAKE": "false"}),
])
def test_config_error_examples_are_verbatim(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    cfg = tmp_path / "capsule8-sensor.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(cfg), None, env=env)
    _quoted("crisensor: " + str(err.value).replace(str(cfg), "/etc/capsule8/capsule8-sensor.yaml"))


def _poller_templates() -> list[re.Pattern[str]]:
    tree = ast.parse((REPO / "sensor" / "poller.py").read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in node.values]
            pattern = "".join(parts)
            if pattern.startswith("crisensor:"):
                out.append(re.compile(pattern + "$"))
    return out


@pytest.mark.parametrize("start", ["crisensor: connection lost (", "crisensor: list failed ("])
def test_poll_loop_messages_match_the_code(start: str) -> None:
    heading = next(h for h in _headings() if h.startswith(start))
    assert any(t.match(heading) for t in _poller_templates()), f"no template in sensor/poller.py prints {heading}"


def test_handshake_section_states_the_real_cause() -> None:
    text = section("The handshake")
    for fact in ("1.14.11, 1.15.2 and 1.16.0", "cmux", "SETTINGS", "HEADERS", "GRPC_GO_REQUIRE_HANDSHAKE",
                 "gRPC C-core", "grpcio", "context deadline exceeded"):
        assert fact in text, fact


def test_paths_and_commands_in_the_doc_exist() -> None:
    for overlay in re.findall(r"kubectl apply -k (\S+)", DOC):
        assert (REPO / overlay / "kustomization.yaml").exists(), overlay
    assert "podman build -f Containerfile" in DOC and "docker build -f Containerfile" in DOC
    assert (REPO / "Containerfile").exists()
    for path in re.findall(r"`(deploy/[^`\s]+)`", DOC):
        assert (REPO / path.rstrip("/")).exists(), path
    image = re.search(r"ARG PYTHON_IMAGE=docker\.io/library/(\S+)", (REPO / "Containerfile").read_text())
    assert image and image.group(1) in DOC, "the doc names another base image than the Containerfile"


def _seed_sentences() -> list[str]:
    for base in (Path("/work/shared/seeds"), REPO.parent / "shared" / "seeds"):
        if base.is_dir():
            text = " ".join(p.read_text(errors="replace") for p in sorted(base.iterdir()) if p.is_file())
            sentences = re.split(r"(?<=[.!?])\s+|\n", text)
            return [" ".join(s.split()) for s in sentences if len(s.split()) >= 8]
    return []


def test_no_prose_copied_from_the_seed_page() -> None:
    sentences = _seed_sentences()
    if not sentences:
        pytest.skip("the seed page (shared/seeds) is not on this machine")
    doc = " ".join(DOC.split())
    copied = [s for s in sentences if s in doc]
    assert not copied, copied
