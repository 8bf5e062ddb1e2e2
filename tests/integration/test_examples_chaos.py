"""The public-style examples under `spotrun chaos --kills 5 --sigkill 2`: each ends IDENTICAL.

Every example folder holds the script as written without spotrun (``original.py``, which must
still run) and its adaptation (``train.py``, at most 15 changed lines: test_examples_diff.py).
Chaos compares the whole final checkpoint of the interrupted run with an uninterrupted one:
tensors bit for bit and every other value (RNG, optimizer, scheduler, scaler, loop positions,
the script's own ``ckpt.state``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPOTRUN = str(Path(sys.executable).with_name("spotrun"))

# (folder, arguments that keep the chaos run small, chaos seed)
EXAMPLES = [
    ("word_language_model", ["--epochs", "5"], 3),
    ("time_sequence_prediction", ["--steps", "8"], 4),
    ("digits_amp", ["--epochs", "3"], 5),
]
# (folder, arguments for one short run, a line the original prints at its end)
ORIGINALS = [
    ("word_language_model", ["--epochs", "1"], "End of training"),
    ("time_sequence_prediction", ["--steps", "1"], "test loss:"),
    ("digits_amp", ["--epochs", "1"], "Test set: Average loss"),
]
IDS = [example[0] for example in EXAMPLES]


def _without_spotrun_env() -> dict[str, str]:
    """This test's environment minus any SPOTRUN_* a developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SPOTRUN_")}


def interruptions(chaos_output: str) -> int:
    """The count chaos prints of interruptions that really happened (``interruptions: N``)."""
    found = re.search(r"^interruptions: (\d+)\b", chaos_output, re.MULTILINE)
    assert found, f"chaos printed no 'interruptions: N' line:\n{chaos_output}"
    return int(found.group(1))


@pytest.mark.parametrize(("example", "args", "seed"), EXAMPLES, ids=IDS)
def test_the_adapted_example_survives_five_sigterms_and_two_sigkills_identical(
    example: str, args: list[str], seed: int, tmp_path: Path
) -> None:
    command = [SPOTRUN, "chaos", "--kills", "5", "--sigkill", "2", "--seed", str(seed)]
    command += ["--workdir", str(tmp_path / "chaos"), "--", sys.executable]
    command += [str(ROOT / "examples" / example / "train.py"), *args]
    result = subprocess.run(
        command, cwd=tmp_path, env=_without_spotrun_env(), capture_output=True, text=True,
        timeout=800,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "IDENTICAL" in result.stdout and "DIVERGED" not in result.stdout, report
    assert interruptions(result.stdout) >= 1, report
    log = (tmp_path / "chaos" / "interrupted.log").read_text()
    assert "restored step" in log, "no attempt resumed from a checkpoint"


@pytest.mark.parametrize(("example", "args", "last_line"), ORIGINALS, ids=IDS)
def test_the_original_runs_without_spotrun(
    example: str, args: list[str], last_line: str, tmp_path: Path
) -> None:
    script = ROOT / "examples" / example / "original.py"
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, env=_without_spotrun_env(),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert last_line in result.stdout
    assert not (tmp_path / "checkpoints").exists()
    assert "spotrun" not in result.stdout + result.stderr


def test_the_interruption_count_is_read_from_the_chaos_report() -> None:
    report = "  #  INTERRUPTION\ninterruptions: 6 (5 SIGTERM, 1 SIGKILL); 1 of the 7 planned came"
    assert interruptions(report) == 6
    with pytest.raises(AssertionError):
        interruptions("IDENTICAL: the whole final checkpoint")
