"""The sidecar's HTTP endpoints: probes /startupz (restore done), /readyz (S3 healthy),
/healthz; and /status, the ``contract.SidecarReport`` of the newest durable checkpoint and the
sidecar's state (the operator polls it for the job's live progress). Nothing else is served.

The server is one thread with a selector, whatever the clients do: a connection has
``REQUEST_SECONDS`` from accept to a complete request (then it is closed), a request is at most
``MAX_REQUEST_BYTES``, and at most ``MAX_CONNECTIONS`` are open (the oldest is dropped for a
new one). Idle or slow-loris clients therefore cost a socket each, never a thread, and cannot
keep the kubelet's probes from being answered.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .contract import SidecarReport, State

DEFAULT_PORT = 8471
REQUEST_SECONDS = 5.0
MAX_REQUEST_BYTES = 8 * 1024
MAX_CONNECTIONS = 256
PATHS = ("/status", "/startupz", "/readyz", "/healthz")


@dataclass
class Health:
    started: bool = False
    problem: str | None = None
    # The newest durable checkpoint (step, epoch, time, uri, metrics); None until there is one.
    checkpoint: SidecarReport | None = None
    # None: derived from ``started`` (restoring, then running).
    state: State | None = None
    # a gang pod's part and commit (``sidecar.gang_fields``); empty for a single pod
    gang: dict[str, Any] = field(default_factory=dict)


def report(
    health: Health, final_saved: bool | None = None, note: str | None = None
) -> SidecarReport:
    """What /status answers and, with ``final_saved``/``note``, the termination message."""
    base = health.checkpoint.model_dump() if health.checkpoint is not None else {}
    state = health.state or ("running" if health.started else "restoring")
    fields = {**base, **health.gang, "problem": health.problem, "state": state}
    if final_saved is not None:
        fields["finalSaved"] = final_saved
    if note is not None:
        fields["note"] = note
    return SidecarReport.model_validate(fields)


def answer(health: Health, path: str) -> tuple[int, str]:
    """(HTTP status, body) for a probe path: a pure function of the sidecar's health."""
    if path == "/healthz":
        return 200, "ok"
    if path == "/startupz":
        return (200, "restored") if health.started else (503, "restoring the newest checkpoint")
    if path == "/readyz":
        if not health.started:
            return 503, "restoring the newest checkpoint"
        return (503, f"degraded: {health.problem}") if health.problem else (200, "ok")
    if path == "/status":
        return 200, report(health).to_json()
    return 404, "unknown path; use /startupz, /readyz, /healthz or /status"


def respond(health: Health, request: bytes) -> bytes:
    """The whole HTTP/1.0 response to one request's head (pure; the connection then closes)."""
    line = request.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        status, body, kind = 400, "malformed request line", "text/plain"
    elif parts[0] not in ("GET", "HEAD"):
        status, body, kind = 405, "only GET", "text/plain"
    else:
        path = parts[1].split("?", 1)[0]
        status, body = answer(health, path)
        kind = "application/json" if path == "/status" else "text/plain"
    data = body.encode()
    head = (
        f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if parts[0] == "HEAD" else head + data


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS[503] = "Service Unavailable"
_TOO_LARGE = b"HTTP/1.0 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytes = b""


class ProbeServer:
    """One selector thread serving ``health`` on ``port`` (see the module docstring)."""

    def __init__(self, health: Health, port: int, host: str = "0.0.0.0") -> None:
        self.health = health
        self.listener = socket.create_server((host, port), backlog=128, reuse_port=False)
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.conns: dict[socket.socket, _Conn] = {}
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="spotrun-probes", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        self._stopped.set()
        self.thread.join(timeout=2)
        for sock in list(self.conns):
            self._close(sock)
        self.selector.close()
        self.listener.close()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            for key, events in self.selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    self._accept()
                elif sock not in self.conns:
                    continue  # closed earlier in this round (dropped for a newer one)
                elif events & selectors.EVENT_READ:
                    self._read(sock)
                elif events & selectors.EVENT_WRITE:
                    self._write(sock)
            now = time.monotonic()
            for sock in [s for s, c in self.conns.items() if c.deadline < now]:
                self._close(sock)

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, so the rest of the loop still runs
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. out of file descriptors: the backlog keeps them for later
            if len(self.conns) >= MAX_CONNECTIONS:
                oldest = min(self.conns.values(), key=lambda c: c.deadline)
                self._close(oldest.sock)
            sock.setblocking(False)
            self.conns[sock] = _Conn(sock, time.monotonic() + REQUEST_SECONDS)
            self.selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        conn = self.conns[sock]
        try:
            chunk = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(sock)
            return
        conn.inbox += chunk
        if b"\r\n\r\n" not in conn.inbox and len(conn.inbox) < MAX_REQUEST_BYTES:
            return
        if b"\r\n\r\n" in conn.inbox:
            conn.outbox = respond(self.health, bytes(conn.inbox))
        else:
            conn.outbox = (
                b"HTTP/1.0 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"
            )
        self.selector.modify(sock, selectors.EVENT_WRITE)
        self._write(sock)

    def _write(self, sock: socket.socket) -> None:
        conn = self.conns[sock]
        try:
            sent = sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(conn.outbox)
        conn.outbox = conn.outbox[sent:]
        if not conn.outbox:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        self.conns.pop(sock, None)
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()


def serve(health: Health, port: int) -> ProbeServer:
    return ProbeServer(health, port)
