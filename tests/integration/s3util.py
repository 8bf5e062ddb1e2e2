"""Helpers for tests that run the trainer and the sidecar against the real S3 server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SPOTRUN = str(Path(sys.executable).with_name("spotrun"))


def wait_for(predicate: Callable[[], Any], timeout: float = 300.0, what: str = "condition") -> Any:
    """``predicate``'s first true value. ``timeout`` bounds a hang, it is not a timing: one S3
    call on a busy disk may stall for its timeouts (20 s read, 3 tries), so no wait is 60 s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def run_env(s3_env: dict[str, str], directory: Path, uri: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, **s3_env)
    env.update(
        SPOTRUN_CHECKPOINT_DIR=str(directory), SPOTRUN_STORAGE_URI=uri, SPOTRUN_GRACE_SECONDS="20"
    )
    env.update(extra)
    return env


class Sidecar:
    """``spotrun sidecar`` as a process, with its probes, log and termination message."""

    def __init__(
        self,
        env: dict[str, str],
        tmp: Path,
        name: str = "sidecar",
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log = tmp / f"{name}.log"
        self.message = tmp / f"{name}.termination"
        env = dict(
            env,
            SPOTRUN_SIDECAR_PORT=str(self.port),
            SPOTRUN_TERMINATION_MESSAGE_PATH=str(self.message),
            SPOTRUN_SYNC_POLL_SECONDS="0.2",
        )
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                command or [SPOTRUN, "sidecar"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def started(self) -> bool:
        return probe(self.port, "/startupz")[0] == 200

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, timeout: float = 60) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def toy(directory: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "toy_trainer.py"), str(directory), *args],
        env=env,
        stderr=subprocess.PIPE,
    )
