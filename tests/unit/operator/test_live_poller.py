"""The operator's reads of a sidecar's /status against real local servers (threads, loopback):
one overall deadline per request, no redirects, a size cap, and a cache that a reconcile pass
reads without ever waiting on a pod."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from spotrun_operator import live

pytestmark = pytest.mark.unit

REPORT = {"step": 450, "epoch": 3, "uri": "s3://b/p/checkpoints/step-000000000450"}


def http_answer(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.0 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Server:
    """A TCP server on loopback whose handler writes what ``respond`` returns for a request,
    ``pause`` seconds between chunks of ``chunk`` bytes; it counts the requests it got."""

    def __init__(self, respond: Callable[[], bytes], chunk: int = 1 << 20, pause: float = 0):
        self.requests = 0
        self.hung_up = threading.Event()  # a client closed while the answer was being sent
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.recv(4096)
                outer.requests += 1
                data = respond()
                try:
                    for i in range(0, len(data), chunk):
                        self.request.sendall(data[i : i + chunk])
                        time.sleep(pause)
                except OSError:
                    outer.hung_up.set()

        socketserver.ThreadingTCPServer.daemon_threads = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/status"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(respond: Callable[[], bytes], **kw: float) -> Iterator[Server]:
    server = Server(respond, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


def good() -> bytes:
    return http_answer("200 OK", json.dumps(REPORT).encode(), "Content-Type: application/json")


def test_a_sidecar_that_answers_is_read_into_a_typed_report():
    with serving(good) as server:
        reading = live.fetch(server.url)
    assert reading.outcome == "ok"
    assert reading.report is not None
    assert (reading.report.step, reading.report.epoch) == (450, 3)


def test_a_slow_loris_answer_is_cut_at_one_deadline_for_the_whole_request():
    """One byte every 0.5 s: a valid report that would take about a minute to arrive. A
    timeout per socket read would wait for all of it; the deadline is for the whole request."""
    with serving(good, chunk=1, pause=0.5) as server:
        started = time.monotonic()
        reading = live.fetch(server.url, deadline=1.0)
        took = time.monotonic() - started
        assert server.hung_up.wait(10), "the operator kept the connection open"
    assert reading == live.Reading(None, "failed")
    assert took < 5, f"the read took {took:.1f}s against a 1 s deadline"


def test_a_server_that_accepts_and_never_answers_costs_one_deadline():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        port = listener.getsockname()[1]
        started = time.monotonic()
        reading = live.fetch(f"http://127.0.0.1:{port}/status", deadline=0.5)
        took = time.monotonic() - started
    finally:
        listener.close()
    assert reading.outcome == "failed" and took < 5


def test_a_redirect_is_not_followed_and_its_target_is_never_asked():
    with serving(good) as target:

        def redirect() -> bytes:
            return http_answer("302 Found", b"", f"Location: {target.url}")

        with serving(redirect) as hostile:
            reading = live.fetch(hostile.url)
        assert hostile.requests == 1
        assert target.requests == 0
    assert reading == live.Reading(None, "refused")


def test_an_answer_larger_than_the_cap_is_refused_without_reading_it_all():
    body = b'{"step": 1, "note": "' + b"x" * (8 << 20) + b'"}'
    with serving(lambda: http_answer("200 OK", body)) as server:
        reading = live.fetch(server.url)
    assert reading == live.Reading(None, "failed")


@pytest.mark.parametrize(
    "raw",
    [
        http_answer("200 OK", b'{"step": true}'),
        http_answer("200 OK", b'{"step": 1180591620717411303424}'),  # 2**70
        http_answer("200 OK", b"[" * 100_000 + b"]" * 100_000),
        http_answer("500 Internal Server Error", json.dumps(REPORT).encode()),
        b"HTTP/1.0 200 OK\r\nContent-Length: 500\r\n\r\n{}",  # shorter than it says
        b"not http at all",
        b"",
    ],
)
def test_anything_but_a_200_with_a_valid_report_is_no_report(raw):
    reading = live.parse_response(raw)
    assert reading.report is None and reading.outcome in ("invalid", "refused")


def test_a_pass_reads_the_cache_at_once_while_slow_sidecars_are_asked_in_the_background():
    changed = threading.Event()
    reports = live.Reports(lambda ns, name: changed.set(), refresh=0.0)
    try:
        with serving(good, chunk=1, pause=0.5) as slow, serving(good) as fine:
            started = time.monotonic()
            for i in range(8):  # more slow sidecars than the poller has threads
                assert reports.get(("ns", f"slow-{i}"), slow.url) is None
            assert reports.get(("ns", "fine"), fine.url) is None  # nothing read yet
            took = time.monotonic() - started
            assert took < 0.5, f"reading the cache took {took:.2f}s"
            assert changed.wait(15), "the good sidecar's report never arrived"
            report = reports.get(("ns", "fine"), fine.url)
            assert report is not None and report.step == 450
            assert reports.get(("ns", "slow-0"), slow.url) is None
    finally:
        reports.close()


def test_a_report_that_changes_wakes_its_job_once_and_a_failed_read_keeps_the_last_one():
    answers = [good(), b"HTTP/1.0 302 Found\r\nLocation: http://10.0.0.1/\r\n\r\n", good()]
    woken: list[tuple[str, str]] = []
    outcomes: list[str] = []
    read_done = threading.Semaphore(0)

    def on_read(outcome: str) -> None:
        outcomes.append(outcome)
        read_done.release()

    reports = live.Reports(
        lambda ns, name: woken.append((ns, name)),
        on_read,
        refresh=0.0,
        read=lambda url: live.parse_response(answers.pop(0)),
    )
    try:
        for _ in range(3):
            reports.get(("ns", "a"), "http://127.0.0.1:1/status")
            assert read_done.acquire(timeout=10)
        report = reports.get(("ns", "a"), "http://127.0.0.1:1/status")
    finally:
        reports.close()
    assert report is not None and report.step == 450
    assert woken == [("ns", "a")]  # the same report again, or a redirect, wakes nobody
    assert outcomes == ["ok", "refused", "ok"]


def test_a_new_pod_of_the_job_or_a_forgotten_job_starts_from_no_report():
    url = "http://10.0.0.1:8471/status"
    reports = live.Reports(refresh=3600.0, read=lambda url: live.parse_response(good()))
    try:
        reports.get(("ns", "a"), url)
        deadline = time.monotonic() + 10
        while reports.get(("ns", "a"), url) is None:
            assert time.monotonic() < deadline, "the report never arrived"
            time.sleep(0.01)
        assert reports.get(("ns", "a"), "http://10.0.0.2:8471/status") is None
        reports.get(("ns", "b"), url)
        while reports.get(("ns", "b"), url) is None:
            assert time.monotonic() < deadline, "the report never arrived"
            time.sleep(0.01)
        reports.forget(("ns", "b"))
        assert reports.get(("ns", "b"), url) is None
    finally:
        reports.close()
