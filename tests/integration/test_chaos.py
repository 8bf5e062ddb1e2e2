"""`spotrun chaos` on real training processes: the verdict, the differences, the interruptions.

Interruptions are aimed at steps the run logs, not at instants, so a busy machine changes how
long a test takes, not what it proves; no test here waits on a clock.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spotrun.chaos_plan import plan

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPOTRUN = str(Path(sys.executable).with_name("spotrun"))
COUNT = re.compile(r"^interruptions: (\d+) \((\d+) SIGTERM, (\d+) SIGKILL\)", re.MULTILINE)


def _chaos(
    workdir: Path, flags: list[str], script: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``spotrun chaos FLAGS -- python SCRIPT…`` (each run may take --timeout, 600 s)."""
    command = [SPOTRUN, "chaos", *flags, "--workdir", str(workdir), "--timeout", "600"]
    return subprocess.run(
        [*command, "--", sys.executable, *script], capture_output=True, text=True, env=env
    )


def _digits(epochs: int) -> list[str]:
    return [str(ROOT / "examples/digits/train.py"), "--epochs", str(epochs)]


def _table(stdout: str) -> list[list[str]]:
    """The rows of the attempts table: #, interruption, at step, resumed at, lost, resume s."""
    return [line.split() for line in stdout.splitlines() if line[:3].strip().isdigit()]


def _interruptions(stdout: str) -> tuple[int, int, int]:
    """(all, SIGTERM, SIGKILL) as the report counts them, checked against its table."""
    found = COUNT.search(stdout)
    assert found, stdout
    total, sigterms, sigkills = (int(n) for n in found.groups())
    kinds = [row[1] for row in _table(stdout) if row[1] != "none"]
    assert total == len(kinds), f"the count and the table disagree:\n{stdout}"
    assert sigterms == kinds.count("sigterm")
    assert sigkills == sum(kind.startswith("sigkill") for kind in kinds)
    return total, sigterms, sigkills


# Each attempt is a new Python process importing torch: on a busy machine each costs tens of
# seconds, so the runs that restart 8 times get more than the tier's 900 s. A hang still ends:
# chaos stops any run after its --timeout (600 s) and says which.
SLOW = pytest.mark.timeout(2400)


@SLOW
def test_digits_under_five_sigterms_and_two_sigkills_ends_bit_identical(tmp_path: Path) -> None:
    result = _chaos(tmp_path, ["--kills", "5", "--sigkill", "2", "--seed", "11"], _digits(8))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL: the whole final checkpoint (step 360)" in result.stdout
    total, sigterms, sigkills = _interruptions(result.stdout)
    # the plan aims one interruption at each seventh of the 360 steps; only the last can come
    # after the script finished, so at least six happen, and they reach the run's last sevenths
    assert total >= 6 and sigkills >= 1 and sigterms >= 4
    rows = [row for row in _table(result.stdout) if row[1] != "none"]
    assert max(int(row[2]) for row in rows) > 360 * 5 / 7
    assert all(row[4] == "0" for row in rows if row[1] == "sigterm"), "a SIGTERM lost steps"


LEAKY = """
import random, numpy as np, torch, spotrun
random.seed(0)
torch.manual_seed(0)
model = torch.nn.Linear(2, 2)
extras = {"calls": 0}
calls = 0  # the script counts in a local variable: not what restore() puts back
with spotrun.Checkpointer(model=model, extras=extras, interval_steps=20) as ckpt:
    ckpt.restore()
    for _ in range(ckpt.global_step, 200):
        calls += 1
        extras["calls"] = calls
        np.random.rand()  # numpy's global RNG, never seeded
        ckpt.step()
"""


def test_a_script_keeping_state_outside_the_checkpoint_is_diverged_naming_each_value(
    tmp_path: Path,
) -> None:
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY)

    result = _chaos(tmp_path / "w", ["--kills", "2", "--seed", "1"], [str(script)])

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "DIVERGED: the final checkpoint (step 200) differs" in out
    calls = re.search(r"^  extras\.calls: 200 vs (\d+)$", out, re.MULTILINE)
    assert calls and int(calls.group(1)) < 200, out  # counted from 0 again after a resume
    assert "  rng.numpy.state.key: " in out
    assert "hint: numpy's RNG differs: the script uses numpy's RNG without seeding it" in out
    assert "hint: the script's own state differs: it lives in a variable outside" in out
    assert "model." not in out and "rng.python" not in out and "rng.torch" not in out
    assert _interruptions(out)[0] >= 1


AFTER_THE_END = """
import json, os, pathlib, random, time, numpy as np, torch, spotrun
random.seed(0)
np.random.seed(0)
torch.manual_seed(0)
with spotrun.Checkpointer(model=torch.nn.Linear(2, 2)) as ckpt:
    ckpt.restore()
    for _ in range(ckpt.global_step, 1):
        ckpt.step()
# the script's own work after training (say, an export): chaos is pointed at it through the
# progress log, as if it were a second step; the reference run need not wait for a signal
event = {"event": "step", "step": 2, "t": time.time(), "pid": os.getpid()}
with open(os.environ["SPOTRUN_PROGRESS_FILE"], "a") as log:
    log.write(json.dumps(event) + "\\n")
if pathlib.Path(os.environ["SPOTRUN_CHECKPOINT_DIR"]).name != "reference":
    time.sleep(300)  # SIGTERM (no handler now: the Checkpointer closed) ends this with -15
"""


def test_a_sigterm_after_the_script_finished_counts_as_none_not_a_failure(tmp_path: Path) -> None:
    script = tmp_path / "after.py"
    script.write_text(AFTER_THE_END)
    seed = next(s for s in range(100) if plan(1, 0, s, total_steps=2, epoch_ends=[2])[0].step == 2)

    result = _chaos(tmp_path / "w", ["--kills", "1", "--seed", str(seed)], [str(script)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "attempt 1: sigterm          ran to the end at step 2, exit -15" in result.stderr
    assert _interruptions(result.stdout) == (0, 0, 0)
    assert "1 of the 1 planned came after the script had finished (none)" in result.stdout
    assert "IDENTICAL" in result.stdout


def test_fresh_dir_without_storage_is_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPOTRUN_STORAGE_URI"}
    result = _chaos(tmp_path, ["--fresh-dir"], _digits(1), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("spotrun chaos: refused: --fresh-dir gives every restart")
    assert "SPOTRUN_STORAGE_URI is not set" in result.stderr and "drop --fresh-dir" in result.stderr
    assert "IDENTICAL" not in result.stdout and not (tmp_path / "reference.log").exists()


@SLOW
def test_digits_resuming_only_from_s3_on_a_fresh_disk_every_time_ends_bit_identical(
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    env = dict(os.environ, **s3.env(), SPOTRUN_STORAGE_URI=f"s3://{s3_bucket}/jobs/digits")
    flags = ["--kills", "3", "--sigkill", "1", "--seed", "5", "--fresh-dir"]
    result = _chaos(tmp_path, flags, _digits(6), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL: the whole final checkpoint (step 270)" in result.stdout
    total, sigterms, _ = _interruptions(result.stdout)
    assert total >= 3  # one per quarter of the run; only the last may come after the end
    log = (tmp_path / "interrupted.log").read_text()
    # a SIGTERM saves to S3 before the exit, so the next attempt (on an empty disk) restores
    # from there (a SIGKILL before the first upload would make the next one start afresh)
    assert log.count("restored step-") >= sigterms >= 1
    assert f"s3://{s3_bucket}/jobs/digits" in log
