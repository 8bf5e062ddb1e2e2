"""Background processes of the local environment: start in their own process group, find, stop.

Every process started here (and every container the process node runs) carries the
environment variable ``SPOTRUN_LOCALCLUSTER_STATE=<state dir>``, so ``down`` can sweep
whatever is left and a test can prove that nothing is.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

MARKER_ENV = "SPOTRUN_LOCALCLUSTER_STATE"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def pid_file(state: Path, name: str) -> Path:
    return state / "pids" / f"{name}.pid"


def start(
    state: Path,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` detached in a new session, logging to ``<state>/logs/<name>.log``."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env[MARKER_ENV] = str(state)
    with open(state / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file(state, name).write_text(str(proc.pid))
    return proc.pid


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; our own zombies are reaped)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def running_pid(state: Path, name: str) -> int | None:
    """The pid of component ``name`` if its pid file names a live process of this state dir."""
    path = pid_file(state, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if is_alive(pid) and state_of(pid) == str(state):
        return pid
    return None


def state_of(pid: int) -> str | None:
    """The state dir a process was started for (its marker variable), if any."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{MARKER_ENV}=".encode()
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def marked_pids(state: Path) -> list[int]:
    """Every live process that carries this state dir's marker (components and containers)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            pid = int(entry.name)
            if state_of(pid) == str(state) and is_alive(pid):
                found.append(pid)
    return found


def kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(is_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(is_alive(p) for p in pids)


def stop(state: Path, name: str, timeout: float = 10.0) -> bool:
    """Stop component ``name``'s process group: SIGTERM, then SIGKILL after ``timeout``."""
    pid = running_pid(state, name)
    pid_file(state, name).unlink(missing_ok=True)
    if pid is None:
        return False
    kill_group(pid, signal.SIGTERM)
    if not wait_gone([pid], timeout):
        kill_group(pid, signal.SIGKILL)
        wait_gone([pid], 5.0)
    return True


def sweep(state: Path, timeout: float = 5.0, keep: Sequence[int] = ()) -> list[int]:
    """SIGKILL every process still marked with this state dir (but ``keep``); return them."""
    pids = [p for p in marked_pids(state) if p not in keep]
    for pid in pids:
        kill_group(pid, signal.SIGKILL)
    wait_gone(pids, timeout)
    return pids
