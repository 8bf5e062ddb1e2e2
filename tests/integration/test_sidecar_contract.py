"""The real sidecar, with torch unimportable, against the real S3 server: it restores (skipping
a corrupted newest checkpoint), uploads, lands the final checkpoint and reports it; and it
honours spec.checkpoint.keepBest (SPOTRUN_KEEP_BEST_*) when it prunes S3."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from spotrun import Checkpointer, checksum, layout, marker, mirror
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from tests.integration.s3util import Sidecar, run_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]

NO_TORCH = [sys.executable, str(Path(__file__).with_name("notorch.py")), "sidecar"]


def _save(directory: Path, step: int, **metrics: float) -> None:
    """A committed checkpoint of step ``step`` (a tiny model) with ``metrics`` in its manifest."""
    torch.manual_seed(step)
    with Checkpointer(
        directory, model=torch.nn.Linear(8, 8), handle_signals=False, keep=100
    ) as ckpt:
        ckpt.global_step = step - 1
        ckpt.record(**metrics)
        ckpt.step()
        ckpt.save(wait=True)


def _steps(store: S3Store) -> set[int]:
    return {step for step, name in layout.newest_first(store.names()) if store.has_manifest(name)}


def _wait_for_step(remote: S3Store, step: int) -> None:
    wait_for(lambda: step in _steps(remote), what=f"the upload of step {step}")


def _remote(s3: Any, bucket: str, prefix: str) -> S3Store:
    return S3Store(bucket, prefix, endpoint=s3.endpoint_url)


def _flip_a_byte(folder: Path) -> None:
    """Step 5's bytes no longer match its manifest's CRC32C."""
    payload = folder / layout.TENSORS
    flipped = bytearray(payload.read_bytes())
    flipped[-1] ^= 0xFF
    payload.write_bytes(flipped)


def _malformed_but_listed(folder: Path) -> None:
    """Step 5's tensor file is garbage that its manifest lists with the right size and CRC32C
    (a buggy or hostile writer): only a look at the payload itself can refuse it."""
    garbage = b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + bytes(64)
    (folder / layout.TENSORS).write_bytes(garbage)
    manifest = json.loads((folder / layout.MANIFEST).read_text())
    for entry in manifest["files"]:
        if entry["path"] == layout.TENSORS:
            entry["size"] = len(garbage)
            entry["crc32c"] = checksum.to_hex(checksum.of_bytes(garbage))
    (folder / layout.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [(_flip_a_byte, "CRC32C"), (_malformed_but_listed, "malformed payload: header is not JSON")],
    ids=["crc", "malformed"],
)
def test_the_sidecar_restores_syncs_and_lands_the_final_save_with_torch_unimportable(
    s3: Any, s3_bucket: str, tmp_path: Path, spoil: Callable[[Path], None], reason: str
) -> None:
    remote = _remote(s3, s3_bucket, "jobs/notorch")
    earlier = tmp_path / "earlier-attempt"
    _save(earlier, 3)
    _save(earlier, 5)
    spoil(LocalStore(earlier).path(layout.step_dirname(5)))
    for step in (3, 5):
        mirror.upload(LocalStore(earlier), layout.step_dirname(step), remote)

    node = tmp_path / "node"
    env = run_env(s3.env(), node, f"s3://{s3_bucket}/jobs/notorch")
    sidecar = Sidecar(env, tmp_path, command=NO_TORCH)
    try:
        wait_for(sidecar.started, what="the torch-free sidecar's startup probe")
        assert [name for _, name in layout.newest_first(LocalStore(node).names())] == [
            layout.step_dirname(3)
        ], "the restore must skip the spoilt step 5 and bring back step 3"
        _save(node, 8)  # the trainer's save: the sidecar uploads it
        _wait_for_step(remote, 8)
        _save(node, 9)  # the final save: its exit note names step 9
        assert (marker.read(LocalStore(node).root) or {}).get("step") == 9
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.proc.wait(timeout=60) == 0
    finally:
        sidecar.kill()
    log = sidecar.output()
    assert "unimportable" not in log and "Traceback" not in log, log
    assert "skipping step-000000000005" in log and reason in log, log
    message = json.loads(sidecar.message.read_text())
    assert message["finalSaved"] is True and message["step"] == 9, message
    assert {8, 9} <= _steps(remote)


@pytest.mark.parametrize(
    ("best", "kept"),
    [(None, {4}), ({"SPOTRUN_KEEP_BEST_METRIC": "acc", "SPOTRUN_KEEP_BEST_MODE": "max"}, {2, 4})],
    ids=["keep-1", "keep-1-and-best-acc"],
)
def test_keep_best_keeps_the_best_checkpoint_in_s3_that_keep_n_deletes(
    s3: Any, s3_bucket: str, tmp_path: Path, best: dict[str, str] | None, kept: set[int]
) -> None:
    remote = _remote(s3, s3_bucket, "jobs/best")
    node = tmp_path / "node"
    env = run_env(s3.env(), node, f"s3://{s3_bucket}/jobs/best", SPOTRUN_KEEP="1", **(best or {}))
    sidecar = Sidecar(env, tmp_path, command=NO_TORCH)
    try:
        wait_for(sidecar.started, what="the sidecar's startup probe")
        for step, acc in ((1, 0.5), (2, 0.9), (3, 0.6), (4, 0.7)):
            _save(node, step, acc=acc)
            _wait_for_step(remote, step)
        wait_for(lambda: _steps(remote) == kept, timeout=300, what=f"S3 to hold steps {kept}")
        sidecar.stop()
    finally:
        sidecar.kill()
    assert _steps(remote) == kept
    assert len(list(LocalStore(node).names())) == 4  # S3 retention is the sidecar's, not local
