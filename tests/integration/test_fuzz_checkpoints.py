"""Hostile checkpoints in S3 (issue 10 items 1 and 4): ``spotrun pull`` and the sidecar's
restore (``Syncer.restore_newest``) against the real S3 server.

Every generated case (tests/hostile_checkpoints.py) sits in the bucket above a valid step 1.
Both must bring back step 1 and nothing else, log why each case was skipped, raise nothing and
create no file outside their target folder (a canary folder sits beside it). The local-disk
part (ls, verify, inspect, restore, links and FIFOs) is tests/unit/test_hostile_checkpoints.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from botocore.exceptions import ClientError

from spotrun import Checkpointer, cli, layout, reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from spotrun.syncer import Syncer
from tests import hostile_checkpoints as hostile
from tests.conftest import S3Endpoint

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]

FUZZ_SEED = int(os.environ.get("SPOTRUN_FUZZ_SEED", "20261201"))
FUZZ_CASES = int(os.environ.get("SPOTRUN_FUZZ_CASES", "1000"))
BATCH = 100  # cases in the bucket at once, each at its own step above the valid one
PREFIX = "team/job"


@dataclass
class Workspace:
    """<base>/canary beside the targets; the valid step 1 and the generator's source."""

    base: Path
    canary: hostile.Canary
    source: hostile.Source
    valid: dict[str, bytes]  # step 1's files


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    base = tmp_path_factory.mktemp("hostile-s3")
    trained = tmp_path_factory.mktemp("trained")
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Checkpointer(trained, model=model, optimizer=opt, handle_signals=False) as ckpt:
        for _ in range(2):
            model(torch.randn(3, 4)).sum().backward()
            opt.step()
            ckpt.step()
            ckpt.save()
    folders = trained / layout.CHECKPOINTS
    source = hostile.Source.from_folder(folders / layout.step_dirname(2))
    first = folders / layout.step_dirname(1)
    valid = {p.name: p.read_bytes() for p in first.iterdir()}
    canary_dir = base / "canary"
    canary_dir.mkdir()
    canary = hostile.Canary(canary_dir, b"the admin's secret\n")
    canary.file.write_bytes(canary.secret)
    return Workspace(base, canary, source, valid)


class Bucket:
    def __init__(self, s3: S3Endpoint, bucket: str) -> None:
        self.client: Any = s3.client()
        self.bucket = bucket
        self.uri = f"s3://{bucket}/{PREFIX}"
        self.pool = ThreadPoolExecutor(8)

    def key(self, step: int, path: str) -> str:
        return f"{PREFIX}/{layout.CHECKPOINTS}/{layout.step_dirname(step)}/{path}"

    def put(self, step: int, files: dict[str, bytes]) -> list[str]:
        """Payload first, manifest last (as a writer would); returns the keys."""
        keys = []
        for path in sorted(files, key=lambda p: p == layout.MANIFEST):
            keys.append(self.key(step, path))
            self.client.put_object(Bucket=self.bucket, Key=keys[-1], Body=files[path])
        return keys

    def put_many(self, cases: list[hostile.Case]) -> list[str]:
        batches = self.pool.map(lambda c: self.put(c.step, c.files), cases)
        return [key for keys in batches for key in keys]

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})


@pytest.fixture
def bucket(s3: S3Endpoint, s3_bucket: str, workspace: Workspace) -> Iterator[Bucket]:
    b = Bucket(s3, s3_bucket)
    b.put(1, workspace.valid)
    yield b
    b.pool.shutdown()


def pull(uri: str, target: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(["pull", uri, str(target)])
    return code, out.getvalue()


def sidecar_restore(uri: str, target: Path) -> int | None:
    return Syncer(LocalStore(target), S3Store.from_uri(uri)).restore_newest()


def only_step_one(target: Path) -> list[str]:
    """What is wrong with a target folder that should hold exactly the valid step 1."""
    store = LocalStore(target)
    problems = []
    if sorted(store.names()) != [layout.step_dirname(1)]:
        problems.append(f"{target.name} holds {sorted(store.names())}")
    loaded = reader.newest_valid(store)
    if loaded is None or loaded.step != 1:
        problems.append(f"{target.name}: newest valid is {loaded and loaded.step}")
    return problems


def check_batch(
    ws: Workspace, bucket: Bucket, cases: list[hostile.Case], index: int, log: Any
) -> list[str]:
    keys = bucket.put_many(cases)
    pulled, node = ws.base / f"pulled-{index}", ws.base / f"node-{index}"
    before = hostile.tree(ws.base)
    problems = []
    log.clear()
    try:
        code, out = pull(bucket.uri, pulled)
        if code != 0 or f"pulled 1 checkpoint(s) into {pulled / layout.CHECKPOINTS}" not in out:
            problems.append(f"pull exited {code}: {out[-400:]}")
        problems += only_step_one(pulled)
        step = sidecar_restore(bucket.uri, node)
        if step != 1:
            problems.append(f"the sidecar's restore gave step {step}")
        problems += only_step_one(node)
    except Exception as e:  # noqa: BLE001 (the fuzz reports any escape as a failure)
        problems.append(f"uncaught {type(e).__name__}: {e}")
    created = {
        p for p in hostile.tree(ws.base) - before if not p.startswith((pulled.name, node.name))
    }
    if created:
        problems.append(f"created outside the target folders: {sorted(created)}")
    messages = [r.getMessage() for r in log.records]
    for case in cases:
        name = layout.step_dirname(case.step)
        for says in (f"not pulling {name}:", f"skipping {name}:"):
            if sum(says in m for m in messages) != 1:
                problems.append(f"{case} {case.notes}: no single '{says}' line")
    bucket.delete(keys)
    return [f"batch {index}: {p}" for p in problems]


def test_fuzz_pull_and_the_sidecar_restore_only_the_valid_checkpoint(
    workspace: Workspace, bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spotrun")
    cases = list(
        hostile.generate(FUZZ_SEED, FUZZ_CASES, workspace.source, workspace.canary, local=False)
    )
    assert len(cases) >= min(FUZZ_CASES, 1000)
    failures: list[str] = []
    for index, start in enumerate(range(0, len(cases), BATCH)):
        failures += check_batch(workspace, bucket, cases[start : start + BATCH], index, caplog)
    assert not failures, f"seed {FUZZ_SEED}: {len(failures)} failures:\n" + "\n".join(failures[:15])


# -- the traversal of issue 10 item 1, reproduced ------------------------------------------


def _traversal(ws: Workspace, bucket: Bucket, target: Path) -> None:
    """Step 2 in the bucket names ``../../../canary/pwned`` (relative to a step folder of
    ``target``) and an absolute path into the canary folder, with an object at each key."""
    files = ws.source.checkpoint(2)
    manifest = json.loads(files[layout.MANIFEST])
    relative = f"../../../{ws.canary.dir.name}/pwned"
    absolute = str(ws.canary.dir / "pwned-absolute")
    manifest["files"] += [hostile.entry(p, b"pwned\n") for p in (relative, absolute)]
    for path in (relative, absolute):
        with contextlib.suppress(ClientError):  # the server may refuse such a key: fine
            bucket.client.put_object(Bucket=bucket.bucket, Key=bucket.key(2, path), Body=b"pwned\n")
    files[layout.MANIFEST] = json.dumps(manifest).encode()
    bucket.put(2, files)
    assert target.parent == ws.base


def test_pull_writes_nothing_a_manifest_names_outside_the_target(
    workspace: Workspace, bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    target = workspace.base / "pull-traversal"
    _traversal(workspace, bucket, target)
    code, out = pull(bucket.uri, target)
    assert code == 0 and "pulled 1 checkpoint(s)" in out
    assert sorted(os.listdir(workspace.canary.dir)) == ["secret"]
    assert only_step_one(target) == []
    assert "not part of the checkpoint format" in caplog.text


def test_the_sidecars_restore_writes_nothing_a_manifest_names_outside_its_folder(
    workspace: Workspace, bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    target = workspace.base / "sidecar-traversal"
    _traversal(workspace, bucket, target)
    assert sidecar_restore(bucket.uri, target) == 1
    assert sorted(os.listdir(workspace.canary.dir)) == ["secret"]
    assert only_step_one(target) == []
    assert "not part of the checkpoint format" in caplog.text
