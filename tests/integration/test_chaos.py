"""`spotrun chaos` on the digits example: interrupted runs end bit-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPOTRUN = str(Path(sys.executable).with_name("spotrun"))


def _chaos(
    workdir: Path, flags: list[str], epochs: int, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``spotrun chaos FLAGS`` on the digits example."""
    command = [SPOTRUN, "chaos", *flags, "--workdir", str(workdir), "--", sys.executable]
    command += [str(ROOT / "examples/digits/train.py"), "--epochs", str(epochs)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_digits_under_five_sigterms_and_two_sigkills_ends_bit_identical(tmp_path: Path) -> None:
    result = _chaos(tmp_path, ["--kills", "5", "--sigkill", "2", "--seed", "11"], epochs=8)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL" in result.stdout
    table = [line.split() for line in result.stdout.splitlines()[1:] if line[:3].strip().isdigit()]
    sigterms = [row for row in table if row[1] == "sigterm"]
    assert len(sigterms) == 5
    assert all(row[4] == "0" for row in sigterms), "a SIGTERM lost steps"


def test_chaos_reports_divergence_and_fails(tmp_path: Path) -> None:
    script = tmp_path / "nondeterministic.py"
    script.write_text(
        "import os, torch, spotrun\n"
        "m = torch.nn.Linear(2, 2)\n"
        "with torch.no_grad():\n"
        "    m.weight.add_(float(os.getpid() % 7 + 1))  # differs per process: not resumable\n"
        "with spotrun.Checkpointer(model=m) as c:\n"
        "    c.restore()\n"
        "    for _ in range(3000):\n"
        "        c.step()\n"
    )
    result = subprocess.run(
        [
            SPOTRUN,
            "chaos",
            "--kills",
            "1",
            "--workdir",
            str(tmp_path / "w"),
            "--",
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "DIVERGED" in result.stdout or "problem" in result.stdout


def test_digits_resuming_only_from_s3_on_a_fresh_disk_every_time_ends_bit_identical(
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    import os

    env = dict(os.environ, **s3.env(), SPOTRUN_STORAGE_URI=f"s3://{s3_bucket}/jobs/digits")
    flags = ["--kills", "3", "--sigkill", "1", "--seed", "5", "--fresh-dir"]
    result = _chaos(tmp_path, flags, epochs=6, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL" in result.stdout
    log = (tmp_path / "interrupted.log").read_text()
    assert "restored step-" in log and f"s3://{s3_bucket}/jobs/digits" in log
