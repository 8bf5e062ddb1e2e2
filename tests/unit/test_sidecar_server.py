"""The sidecar's HTTP server under idle and slow-loris clients, and what it serves."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from spotrun import contract, probes
from spotrun.contract import SidecarReport
from spotrun.probes import Health, ProbeServer, report, respond

pytestmark = pytest.mark.unit


@pytest.fixture
def server() -> Iterator[ProbeServer]:
    health = Health(started=True, checkpoint=SidecarReport(step=7, uri="s3://b/p/step-7"))
    srv = ProbeServer(health, 0, host="127.0.0.1")
    try:
        yield srv
    finally:
        srv.shutdown()


def get(port: int, path: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_idle_and_slow_loris_clients_cost_no_threads_and_probes_still_answer(
    server: ProbeServer,
) -> None:
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(400)]
    loris = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    stop = threading.Event()

    def dribble() -> None:  # one byte of a never-ending header per client, round after round
        while not stop.is_set():
            for sock in loris:
                try:
                    sock.send(b"X")
                except OSError:
                    pass
            stop.wait(0.2)

    sender = threading.Thread(target=dribble, daemon=True)
    sender.start()
    try:
        for sock in loris:
            sock.send(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(3):
            assert get(server.port, "/startupz") == (200, "restored")
        # the server's own threads: still the one selector thread (plus this test's sender)
        assert threading.active_count() <= before + 1
        # a slow-loris client is cut off after REQUEST_SECONDS, not served forever
        time.sleep(probes.REQUEST_SECONDS + 1)
        loris[0].settimeout(5)
        assert loris[0].recv(100) == b""
    finally:
        stop.set()
        for sock in idle + loris:
            sock.close()


def test_more_connections_than_the_cap_drop_the_oldest_not_the_new_probe(
    server: ProbeServer,
) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        assert get(server.port, "/healthz") == (200, "ok")
        assert len(server.conns) <= probes.MAX_CONNECTIONS
    finally:
        for sock in held:
            sock.close()


def test_only_the_four_endpoints_and_only_get_are_served(server: ProbeServer) -> None:
    assert get(server.port, "/healthz") == (200, "ok")
    assert get(server.port, "/readyz") == (200, "ok")
    status, body = get(server.port, "/status")
    assert status == 200 and contract.parse(body) == SidecarReport(
        step=7, uri="s3://b/p/step-7", state="running"
    )
    assert get(server.port, "/metrics")[0] == 404
    assert get(server.port, "/../../etc/passwd")[0] == 404
    assert respond(server.health, b"POST /status HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 405")
    assert respond(server.health, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /" + b"a" * (probes.MAX_REQUEST_BYTES + 10))
        assert sock.recv(100).startswith(b"HTTP/1.0 431")


def test_status_and_termination_message_come_from_one_builder() -> None:
    health = Health()
    assert contract.parse(report(health).to_json()) == SidecarReport(state="restoring")
    health.state, health.problem = "waiting-for-storage", "s3://b/p: S3 endpoint unreachable"
    waiting = contract.parse(respond(health, b"GET /status HTTP/1.1\r\n\r\n").split(b"\r\n\r\n")[1])
    assert waiting is not None and waiting.state == "waiting-for-storage"
    assert waiting.problem == "s3://b/p: S3 endpoint unreachable"
    health.checkpoint = SidecarReport(step=40, epoch=2, metrics={"loss": 0.5})
    health.state, health.problem = "stopped", None
    message = report(health, final_saved=True).to_json()
    assert json.loads(message) == {
        "step": 40,
        "epoch": 2,
        "metrics": {"loss": 0.5},
        "finalSaved": True,
        "state": "stopped",
    }
    assert contract.parse(message) is not None
