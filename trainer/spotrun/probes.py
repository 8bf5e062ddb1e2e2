"""The sidecar's HTTP endpoints: probes /startupz (restore done), /readyz (S3 healthy),
/healthz; and /status, JSON of the newest durable checkpoint (the operator polls it for
the job's live progress)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_PORT = 8471


@dataclass
class Health:
    started: bool = False
    problem: str | None = None
    # The newest durable checkpoint: step, epoch, time, uri, metrics (None until there is one).
    checkpoint: dict[str, Any] | None = None


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
        return 200, json.dumps(health.checkpoint or {}, separators=(",", ":"))
    return 404, "unknown path; use /startupz, /readyz, /healthz or /status"


def serve(health: Health, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            status, body = answer(health, self.path)
            data = body.encode()
            self.send_response(status)
            kind = "application/json" if self.path == "/status" else "text/plain"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return  # probes every few seconds would drown the log

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="spotrun-probes", daemon=True).start()
    return server
