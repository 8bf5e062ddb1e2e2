"""The slice of the kubelet API the API server calls for ``kubectl logs``.

    GET /containerLogs/<namespace>/<pod>/<container>?follow=&previous=&tailLines=&limitBytes=
    GET /healthz

HTTPS with a serving cert from the local CA; only clients with a cert from that CA (the API
server's kubelet client cert) get in. ``kubectl exec``/``port-forward`` are not served.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..pki import Pki
from .manager import NodeManager

FOLLOW_POLL = 0.2


def _runs(log_dir: Path, container: str) -> list[Path]:
    return sorted((log_dir / container).glob("*.log"), key=lambda p: int(p.stem))


def serve(manager: NodeManager, port: int, pki: Pki) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _error(self, code: int, message: str) -> None:
            data = message.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if parts == ["healthz"]:
                self._error(200, "ok")
                return
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._error(404, f"the process node does not serve {url.path}")
                return
            _, namespace, pod, container = parts
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            worker = manager.worker_of(namespace, pod)
            if worker is None:
                self._error(404, f"pod {namespace}/{pod} is not running on this process node")
                return
            runs = _runs(worker.log_dir, container)
            if query.get("previous") == "true":
                runs = runs[:-1]
            if not runs:
                self._error(400, f'container "{container}" in pod "{pod}" has no logs (yet)')
                return
            path = runs[-1]
            data = path.read_bytes()
            if "tailLines" in query:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(query["tailLines"]) :]) if query["tailLines"] else b""
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(data)
            if query.get("follow") != "true" or query.get("previous") == "true":
                return
            self._follow(worker, container, path, path.stat().st_size)

        def _follow(self, worker: Any, container: str, path: Path, offset: int) -> None:
            """Stream what the container writes until it ends (or the client goes away)."""
            runs = {r.name: r for r in worker.init_runs + worker.main_runs}
            run = runs.get(container)
            with open(path, "rb") as f:
                f.seek(offset)
                while True:
                    chunk = f.read(64 * 1024)
                    if chunk:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        continue
                    if run is None or not run.running or worker.gone.is_set():
                        self.wfile.write(f.read())  # what it wrote while it ended
                        return
                    time.sleep(FOLLOW_POLL)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.crt("kubelet"), pki.key("kubelet"))
    context.load_verify_locations(pki.ca_crt)
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="kubelet-api", daemon=True).start()
    return server
