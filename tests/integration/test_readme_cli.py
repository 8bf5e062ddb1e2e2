"""The README's `spotrun` command block, run as written (in a fresh folder)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))

from test_readme_commands import README, readme_commands  # noqa: E402

# Run by test_chaos.py (with more interruptions); here it would only add a minute.
ELSEWHERE = ("spotrun chaos",)


def test_the_cli_block_runs_as_written(tmp_path: Path) -> None:
    # The block starts at the first training run (the install section's `spotrun --version`
    # comes before it, and needs no checkpoints: test_version.py runs it).
    found = [c for c in readme_commands(README.read_text())
             if c.startswith(("spotrun ", "python examples/"))]
    commands = found[found.index("python examples/digits/train.py --epochs 2"):]
    assert [c.split()[1] for c in commands[1:4]] == ["ls", "verify", "inspect"], found
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTRUN_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = {}
    for command in commands:
        if command.startswith(ELSEWHERE):
            continue
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, f"`{command}` failed:\n{done.stdout}{done.stderr}"
        out[command.split()[1]] = done.stdout
    listing = [line.split() for line in out["ls"].splitlines()[1:]]
    assert [row[0] for row in listing] == ["90", "75", "50"]  # 2 epochs of 45 steps, keep 3
    assert all(row[-1] == "valid" for row in listing)
    assert out["verify"].count(": ok") == 3
    assert "step        90" in out["inspect"] and "tensors.safetensors" in out["inspect"]
