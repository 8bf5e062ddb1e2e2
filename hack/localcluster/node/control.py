"""The process node's control API: plain JSON over HTTP on loopback.

    GET  /nodes                        -> [{name, capacityType, renewing, preempting, gone}]
    POST /nodes {capacityType, name?, gpus?, zone?} -> {name}  (add_node)
    POST /nodes/<name>/preempt {noticeSeconds} -> 202         (spot interruption, async)
    POST /nodes/<name>/stop-lease      -> 200                 (a hung kubelet)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..kubeapi import KubeError
from .manager import NodeManager


def serve(manager: NodeManager, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else {}

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/nodes":
                self._reply(200, [
                    {"name": e.name, "capacityType": e.capacity_type, "renewing": e.renewing,
                     "preempting": e.preempting, "gone": e.gone}
                    for e in manager.nodes.values()
                ])
            else:
                self._reply(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            parts = self.path.strip("/").split("/")
            try:
                body = self._body()
                if parts == ["nodes"]:
                    name = manager.add_node(
                        body.get("capacityType", "spot"), body.get("name"),
                        int(body.get("gpus", 0)), body.get("zone"),
                    )
                    self._reply(201, {"name": name})
                elif len(parts) == 3 and parts[0] == "nodes" and parts[2] == "preempt":
                    manager.preempt(parts[1], float(body.get("noticeSeconds", 0)))
                    self._reply(202, {"name": parts[1]})
                elif len(parts) == 3 and parts[0] == "nodes" and parts[2] == "stop-lease":
                    manager.stop_lease(parts[1])
                    self._reply(200, {"name": parts[1]})
                else:
                    self._reply(404, {"error": f"no such path {self.path}"})
            except KeyError as err:
                self._reply(404, {"error": f"unknown node: {err}"})
            except (ValueError, KubeError) as err:
                self._reply(400, {"error": str(err)})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    return server
