"""The operator's API calls reuse their connections: an answer left unread would take its
connection with it, and every pod creation, delete and Event would open a new one (a TLS
handshake against a real API server, on the path that reacts to a preemption)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from socketserver import ThreadingTCPServer
from typing import Any

import pytest
from kubernetes import client

from spotrun_operator.kube import Kube

pytestmark = pytest.mark.unit

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "1", "finalizers": []},
}


class _ApiServer(BaseHTTPRequestHandler):
    """Answers every request with a pod (a list of one for a list), keeping the connection
    open (HTTP/1.1), and counts the connections made."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        listing = self.path.split("?")[0].endswith("/pods")
        body = json.dumps({"items": [POD]} if listing else POD).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def kube() -> Iterator[Kube]:
    _ApiServer.connections = 0
    server = ThreadingTCPServer(("127.0.0.1", 0), _ApiServer)  # no name lookup, unlike HTTPServer
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield Kube(client.ApiClient(config), ["ns"])
    finally:
        server.shutdown()
        server.server_close()


def test_one_connection_serves_every_kind_of_call(kube: Kube) -> None:
    job = {"metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "1"}}
    for _ in range(5):
        kube.create_pod("ns", dict(POD))
        kube.event(job, "Normal", "Created", "created pod p")
        kube.delete_pod("ns", "p")
        kube.release_pod("ns", "p")
        kube.delete_job("ns", "j", "u")
        kube.get_job("ns", "j")
        kube.list_pods("ns", "j")
    assert _ApiServer.connections == 1
