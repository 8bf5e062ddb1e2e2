"""One container run as a local process inside its own private mount namespace.

``unshare --mount`` gives the process a mount namespace in which each volume is bind
mounted at its ``mountPath`` (and the termination message file at
``terminationMessagePath``), then ``exec``s the container's command with its environment,
in ``workingDir`` (default: the repo root). The process leads its own process group, so
stopping it ends everything it started. Exec probes enter the same namespace (nsenter).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import procs
from .volumes import Mount


def _mount_script(mounts: Sequence[Mount], workdir: str) -> str:
    lines = ["set -e"]
    for m in mounts:
        src, dst = shlex.quote(str(m.source)), shlex.quote(m.target)
        if m.source.is_dir():
            lines.append(f"mkdir -p {dst}")
        else:
            lines.append(f"mkdir -p $(dirname {dst}); [ -e {dst} ] || touch {dst}")
        lines.append(f"mount --bind {src} {dst}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {dst}")
    lines.append(f"cd {shlex.quote(workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


class Process:
    """A running (or finished) container process."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        mounts: Sequence[Mount],
        workdir: str,
        log_path: Path,
    ) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.env = dict(env)
        self.workdir = workdir
        script = _mount_script(mounts, workdir)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--",
                 "/bin/sh", "-c", script, "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        """The exit code once the process ended (-N for death by signal N), else None."""
        return self.popen.poll()

    def exit_code(self) -> int | None:
        code = self.popen.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code  # shells' convention: 128 + signal

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the container's main process (PID 1 of a real container)."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def kill_all(self) -> None:
        """SIGKILL the whole process group (what ending a container's PID namespace does)."""
        procs.kill_group(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def reap_group(self) -> None:
        """After the main process exited, end anything it left running in its group."""
        procs.kill_group(self.pid, signal.SIGKILL)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """argv that runs ``argv`` inside this container's mount namespace and workdir."""
        return ["nsenter", f"--target={self.pid}", "--mount", f"--wd={self.workdir}", "--", *argv]


def marker_env(state: Path) -> dict[str, str]:
    return {procs.MARKER_ENV: str(state)}
