"""A TCP proxy for fault tests: in front of a real server it forwards, hangs (accepts, reads,
never answers) or dribbles (an HTTP answer one byte a second), switchable while clients run.
Bound to a chosen port, it also plays a dead endpoint coming back (nothing listened there
before it was made)."""

from __future__ import annotations

import socket
import threading
import time


class Proxy:
    """127.0.0.1:``port`` in front of ``upstream``; ``mode`` applies to new connections."""

    def __init__(self, upstream: str, port: int = 0, mode: str = "forward") -> None:
        host, _, up_port = upstream.removeprefix("http://").rstrip("/").partition(":")
        self.upstream = (host, int(up_port or 80))
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = int(self.listener.getsockname()[1])
        self.held: list[socket.socket] = []
        self.stuck = 0  # connections accepted to hang or dribble
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def switch(self, mode: str) -> None:
        self.mode = mode
        for sock in self.held:  # connections stuck in the old mode end now
            sock.close()
        self.held.clear()

    def close(self) -> None:
        self.switch("closed")
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            mode = self.mode
            if mode == "closed":  # accepted in the instant before the listener closed
                client.close()
                return
            self.stuck += mode != "forward"
            target = {"forward": self._forward, "hang": self._hang, "dribble": self._dribble}
            threading.Thread(target=target[mode], args=(client,), daemon=True).start()

    def _hang(self, client: socket.socket) -> None:
        self.held.append(client)
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass

    def _dribble(self, client: socket.socket) -> None:
        self.held.append(client)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"<" * 100000
        try:
            client.recv(65536)
            for byte in answer:
                client.send(bytes([byte]))
                time.sleep(1)
        except OSError:
            pass

    def _forward(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(server, client), daemon=True).start()
        pump(client, server)
