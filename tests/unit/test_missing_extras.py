"""spotrun with an extra's packages absent (issue 16, review): each extra gives what the README
promises. Every case runs in a real process where the extra's modules are unimportable
(``tests/integration/notorch.py --without ...``), as in an install that lacks the extra.

- ``[torch]`` without boto3: the library imports and saves; an ``s3://`` storage URI (direct
  mode) and the S3 commands say ``pip install 'spotrun[s3]'`` instead of a traceback.
- without torch: ``spotrun ls / verify / inspect`` work (sizes, CRC32C and framing checked, and
  a note saying the decode was not), a corrupt checkpoint is still refused, ``inspect`` shows
  the same tensors as with torch, and ``spotrun chaos`` says ``pip install 'spotrun[torch]'``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer, cli, layout
from spotrun.checking import strongest
from spotrun.reader import load_verified

pytestmark = pytest.mark.unit

UNIMPORTABLE = Path(__file__).resolve().parents[1] / "integration" / "notorch.py"
NO_BOTO3 = "boto3,botocore,s3transfer"
NO_TORCH = "torch,numpy,safetensors"


def _without(modules: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``notorch.py --without MODULES ARGS`` (a spotrun command, or ``-c CODE``)."""
    return subprocess.run(
        [sys.executable, str(UNIMPORTABLE), "--without", modules, *args],
        capture_output=True, text=True, timeout=300, env={**_base_env(), **env},
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SPOTRUN_", "AWS_"))}


def _saved(root: Path, step: int) -> Path:
    with Checkpointer(root, model=torch.nn.Linear(3, 2), handle_signals=False) as ckpt:
        ckpt.global_step = step - 1
        ckpt.step()
        ckpt.save(wait=True)
    return root / "checkpoints" / layout.step_dirname(step)


LIBRARY_WITHOUT_BOTO3 = """
import sys, torch
from spotrun import Checkpointer
with Checkpointer({root!r}, model=torch.nn.Linear(2, 2), handle_signals=False) as ckpt:
    ckpt.step()
    ckpt.save(wait=True)
print("saved", ckpt.global_step, "boto3 imported:", "boto3" in sys.modules)
"""


def test_the_library_imports_and_saves_without_boto3(tmp_path: Path) -> None:
    done = _without(NO_BOTO3, "-c", LIBRARY_WITHOUT_BOTO3.format(root=str(tmp_path / "run")))
    assert done.returncode == 0, done.stderr
    assert "saved 1 boto3 imported: False" in done.stdout
    assert (tmp_path / "run" / "checkpoints" / layout.step_dirname(1)).is_dir()


def test_an_s3_storage_uri_without_boto3_names_the_s3_extra(tmp_path: Path) -> None:
    done = _without(
        NO_BOTO3, "-c", LIBRARY_WITHOUT_BOTO3.format(root=str(tmp_path / "run")),
        SPOTRUN_STORAGE_URI="s3://bucket/jobs/a", SPOTRUN_CHECKPOINT_DIR=str(tmp_path / "run"),
    )
    assert done.returncode != 0
    assert "MissingExtraError: an s3:// storage URI needs boto3" in done.stderr, done.stderr
    assert "pip install 'spotrun[s3]'" in done.stderr


@pytest.mark.parametrize("command", [["ls", "s3://bucket/jobs/a"], ["verify", "s3://b/p"],
                                     ["pull", "s3://bucket/jobs/a", "here"], ["sidecar"]])
def test_s3_commands_without_boto3_name_the_s3_extra(command: list[str]) -> None:
    done = _without(NO_BOTO3, *command, SPOTRUN_STORAGE_URI="s3://bucket/jobs/a")
    assert done.returncode == 1, done.stderr
    assert f"spotrun {command[0]}: " in done.stderr and "pip install 'spotrun[s3]'" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_ls_verify_and_inspect_work_without_torch_and_say_what_they_left_out(
    tmp_path: Path,
) -> None:
    _saved(tmp_path, 3)
    verified = _without(NO_TORCH, "verify", str(tmp_path))
    assert (verified.returncode, verified.stdout) == (0, f"{layout.step_dirname(3)}: ok\n")
    assert "torch is not installed" in verified.stderr
    assert "pip install 'spotrun[torch]'" in verified.stderr

    listed = _without(NO_TORCH, "ls", str(tmp_path))
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[-1] == "valid"

    inspected = _without(NO_TORCH, "inspect", str(tmp_path))
    assert inspected.returncode == 0, inspected.stderr
    with_torch = subprocess.run([sys.executable, "-m", "spotrun.cli", "inspect", str(tmp_path)],
                                capture_output=True, text=True, env=_base_env())
    assert inspected.stdout == with_torch.stdout
    assert "  model/weight" in inspected.stdout and "F32   [2, 3]" in inspected.stdout


def test_verify_without_torch_still_refuses_a_corrupt_checkpoint(tmp_path: Path) -> None:
    folder = _saved(tmp_path, 2)
    tensors = folder / layout.TENSORS
    blob = bytearray(tensors.read_bytes())
    blob[-1] ^= 0xFF
    tensors.write_bytes(bytes(blob))
    verified = _without(NO_TORCH, "verify", str(tmp_path))
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "CRC32C" in verified.stdout and "no valid checkpoint" in verified.stderr


def test_chaos_without_torch_names_the_torch_extra() -> None:
    done = _without(NO_TORCH, "chaos", "--", "true")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "spotrun chaos: this command needs torch, which is not installed: install it with "
        "`pip install 'spotrun[torch]'`"
    )


def test_with_torch_the_commands_run_the_full_decode() -> None:
    assert strongest() == (load_verified, None)


def test_a_missing_module_outside_every_extra_stays_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(args: object) -> int:
        raise ModuleNotFoundError("No module named 'notapackage'", name="notapackage")

    args = cli.parser().parse_args(["verify", "x"])
    args.func = broken
    monkeypatch.setattr(cli.parser(), "parse_args", lambda argv=None: args)
    with pytest.raises(ModuleNotFoundError, match="notapackage"):
        cli.main(["verify", "x"])
