"""The Go entrypoint ``spotrun-exec`` (entrypoint/, built by ``hack/build-binaries entrypoint``)
behaves as ``spotrun exec`` (tests/unit/operator/test_execwrap.py): the child's exit code
comes back (128+N after signal N, 127 when it cannot start), SIGTERM/SIGINT/SIGHUP reach the
child's whole process group behind a shell that would not forward them; ``--copy-to`` installs
a working copy of itself (what the operator's init container runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _binary() -> Path:
    sys.path.insert(0, str(REPO / "hack"))
    from localcluster import config

    return config.binary("spotrun-exec")


def _run(*args: str, binary: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary or _binary()), *args], capture_output=True, text=True, timeout=60
    )


def test_exit_codes_are_passed_through() -> None:
    assert _run("--", "sh", "-c", "exit 3").returncode == 3
    assert _run("sh", "-c", "exit 0").returncode == 0  # the "--" is optional
    assert _run("--", "sh", "-c", "kill -9 $$").returncode == 137


def test_a_command_that_cannot_start_is_127_with_its_name() -> None:
    result = _run("--", "/nonexistent/command", "--lr", "0.1")
    assert result.returncode == 127
    assert "cannot start \"/nonexistent/command\"" in result.stderr
    assert "no such file or directory" in result.stderr


def test_no_command_or_an_unknown_option_is_a_usage_error() -> None:
    nothing = _run("--")
    assert nothing.returncode == 2
    assert "give the command after --" in nothing.stderr
    unknown = _run("--frobnicate", "python")
    assert unknown.returncode == 2
    assert "unknown option \"--frobnicate\"" in unknown.stderr


def test_the_childs_output_and_arguments_pass_unchanged() -> None:
    result = _run("--", "sh", "-c", 'printf "%s|" "$@"; echo err >&2', "sh", "a b", "--x")
    assert (result.returncode, result.stdout, result.stderr) == (0, "a b|--x|", "err\n")


@pytest.mark.parametrize(
    ("sig", "name"),
    [(signal.SIGTERM, "TERM"), (signal.SIGINT, "INT"), (signal.SIGHUP, "HUP")],
)
def test_a_signal_is_forwarded_to_the_whole_child_group(
    tmp_path: Path, sig: signal.Signals, name: str
) -> None:
    ready, got = tmp_path / "ready", tmp_path / "got"
    # The trap sits in a grandchild behind a shell that would not forward the signal itself.
    inner = f"trap 'echo {name} > {got}; exit 7' {name}; touch {ready}; while :; do sleep 0.1; done"
    proc = subprocess.Popen(
        [str(_binary()), "--", "sh", "-c", f"sh -c {_quote(inner)}; exit 9"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=30)
    # the outer shell, signalled too, ends by the signal (128+N) or after its child (9)
    assert proc.returncode in (128 + sig, 9)
    assert got.read_text().strip() == name
    assert f"spotrun-exec: forwarding SIG{name} to process group" in err


def test_a_signal_ending_the_child_is_128_plus_n(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    # no trap: TERM ends the shell (or the sleep it became) by the signal
    proc = subprocess.Popen([str(_binary()), "--", "sh", "-c", f"touch {ready}; exec sleep 600"])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM


def test_copy_to_installs_a_working_executable(tmp_path: Path) -> None:
    result = _run("--copy-to", str(tmp_path))
    installed = tmp_path / "spotrun-exec"
    assert result.returncode == 0, result.stderr
    assert f"installed {installed}" in result.stdout
    assert os.stat(installed).st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["spotrun-exec"]  # no temporary left
    assert _run("--", "sh", "-c", "exit 5", binary=installed).returncode == 5


def test_copy_to_a_missing_directory_says_what_to_mount(tmp_path: Path) -> None:
    result = _run("--copy-to", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "cannot copy itself to" in result.stderr
    assert "emptyDir" in result.stderr


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
