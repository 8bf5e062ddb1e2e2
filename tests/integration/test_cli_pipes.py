"""`spotrun ls … | head -1` and `spotrun inspect … | head -1` end quietly (exit 141, no traceback).

The outputs are made longer than a pipe's buffer (64 KiB), so the command is still writing
when ``head`` exits and closes the pipe: the case a user hits with a long listing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import spotrun

pytestmark = pytest.mark.integration

SPOTRUN = str(Path(sys.executable).with_name("spotrun"))
PIPE = '"$0" "$1" "$2" | head -1; echo "spotrun exit ${PIPESTATUS[0]}"'


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of 3000 tensors (inspect prints a line each), beside 3000 folders that are
    not checkpoints (ls prints a line each)."""
    root = tmp_path_factory.mktemp("pipes")
    model = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(1)) for _ in range(3000))
    with spotrun.Checkpointer(root, model=model, handle_signals=False) as ckpt:
        ckpt.restore()
        ckpt.step()
    for i in range(3000):
        (root / "checkpoints" / f"copied-by-hand-{i:04d}").mkdir()
    return root


@pytest.mark.parametrize(("command", "first"), [("ls", "STEP"), ("inspect", "checkpoint")])
def test_a_reader_that_stops_early_ends_the_command_quietly(
    root: Path, command: str, first: str
) -> None:
    full = subprocess.run([SPOTRUN, command, str(root)], capture_output=True, text=True)
    assert full.returncode == 0 and len(full.stdout) > 128 * 1024  # more than a pipe holds

    done = subprocess.run(
        ["bash", "-c", PIPE, SPOTRUN, command, str(root)], capture_output=True, text=True
    )

    head, status = done.stdout.splitlines()
    assert head.split()[0] == first
    assert status == "spotrun exit 141"  # 128 + SIGPIPE, as a shell reports `yes | head -1`
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
