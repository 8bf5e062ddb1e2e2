"""S3 failures and overlapping attempts, against the real S3 server (versitygw)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from botocore.exceptions import BotoCoreError, ClientError

from localcluster import procs, s3server
from spotrun import Checkpointer, layout, mirror, reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store, TransferSettings
from spotrun.syncer import Syncer
from tests.integration.s3util import run_env, toy, wait_for

pytestmark = pytest.mark.integration


def _checkpoints(directory: Path, megabytes: list[int]) -> None:
    """One checkpoint per entry, step i+1, with a model of about that many MB."""
    for step, mb in enumerate(megabytes, start=1):
        model = torch.nn.Linear(1024, max(mb * 256, 1))
        with Checkpointer(directory, model=model, keep=10, handle_signals=False) as ckpt:
            ckpt.global_step = step - 1
            ckpt.step()
            ckpt.save(wait=True)


class BucketWatcher(threading.Thread):
    """Looks at the bucket over and over: every manifest must name files that exist whole."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.violations: list[str] = []
        self.newest_seen: list[int] = []
        self.looks = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self._look()
            except (BotoCoreError, ClientError):
                pass  # the server is down right now
            time.sleep(0.02)

    def _look(self) -> None:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix)
        sizes = {o["Key"]: o["Size"] for o in listing.get("Contents", [])}
        newest = -1
        for key in sizes:
            if not key.endswith(layout.MANIFEST):
                continue
            folder = key[: -len(layout.MANIFEST)]
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            from spotrun.manifest import parse

            manifest = parse(body, key)
            for entry in manifest.files:
                if sizes.get(folder + entry.path) != entry.size:
                    self.violations.append(f"{key} names {entry.path}, which is missing/partial")
            newest = max(newest, manifest.step)
        self.newest_seen.append(newest)
        self.looks += 1


def test_s3_killed_mid_multipart_upload_retries_and_never_exposes_a_partial_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "s3state"
    info = s3server.start(state)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", info.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", info.secret_key)
        local = LocalStore(tmp_path / "node")
        _checkpoints(local.root, [1, 160])
        remote = S3Store(
            info.bucket,
            "job",
            endpoint=info.endpoint,
            settings=TransferSettings(part_size=5 * 2**20, concurrency=2),
        )
        assert mirror.upload(local, layout.step_dirname(1), remote)
        watcher = BucketWatcher(remote.client, info.bucket, "job/")
        watcher.start()
        syncer = Syncer(local, remote, keep=5)
        uploaded = threading.Event()

        def upload_until_done() -> None:
            while not syncer.sync_once():
                time.sleep(0.5)
            uploaded.set()

        threading.Thread(target=upload_until_done, daemon=True).start()
        wait_for(
            lambda: remote.client.list_multipart_uploads(Bucket=info.bucket).get("Uploads"),
            what="a multipart upload in flight",
        )
        time.sleep(0.3)  # some parts are in
        pid = procs.running_pid(state, s3server.NAME)
        assert pid is not None
        procs.kill_group(pid, signal.SIGKILL)
        assert procs.wait_gone([pid], 10)
        assert not uploaded.is_set()
        time.sleep(1.0)
        s3server.launch(state, info)
        assert uploaded.wait(timeout=180), f"upload never completed: {syncer.problem}"
        time.sleep(0.2)
        watcher.done.set()
        watcher.join()
        assert watcher.violations == []
        assert watcher.looks >= 10  # the bucket was checked at many instants
        before = watcher.newest_seen[: watcher.newest_seen.index(2)]
        assert before and set(before) == {1}, "step 1 stayed the newest valid until step 2 landed"
        assert reader.load_verified(remote, layout.step_dirname(2)).step == 2
    finally:
        s3server.stop(state)


@pytest.mark.usefixtures("s3_credentials")
def test_two_overlapping_attempts_never_delete_each_others_newest(
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/jobs/overlap"
    env_a = run_env(s3.env(), tmp_path / "a", uri, SPOTRUN_ATTEMPT="1")
    env_b = run_env(s3.env(), tmp_path / "b", uri, SPOTRUN_ATTEMPT="2")
    first = toy(tmp_path / "a", env_a, "--mb", "2", "--steps", "10", "--interval", "5")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    remote = S3Store.from_uri(uri)
    watcher = BucketWatcher(remote.client, s3_bucket, "jobs/overlap/")
    watcher.start()
    # the old attempt resumes on its own disk while the new one restores step 10 from S3;
    # both keep only 1 checkpoint, so each one's retention would love to delete the other's.
    # Both restore before either trains on: one that started late would restore the other's
    # newer checkpoint instead (and the new one, restoring the old one's step 35, has no work)
    go = tmp_path / "go"
    flags = ("--mb", "2", "--interval", "5", "--keep", "1", "--go", str(go))
    old = toy(tmp_path / "a", env_a, *flags, "--steps", "40", "--ready", str(tmp_path / "a.ready"))
    new = toy(tmp_path / "b", env_b, *flags, "--steps", "33", "--ready", str(tmp_path / "b.ready"))
    ready = [tmp_path / "a.ready", tmp_path / "b.ready"]
    attempts = (old, new)
    wait_for(
        lambda: all(r.exists() for r in ready) or any(p.poll() is not None for p in attempts),
        what="both attempts restored",
    )
    assert [r.read_text() for r in ready] == ["10", "10"], "old: its disk, new: S3's newest"
    go.touch()
    logs = []
    for proc in attempts:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
        logs.append(err.decode())
    watcher.done.set()
    watcher.join()
    assert watcher.violations == []
    steps = {step for step, _ in layout.newest_first(remote.names()) if remote.has_manifest(_)}
    why = "\n--- old attempt ---\n{}\n--- new attempt ---\n{}".format(*logs)
    assert {40, 33} <= steps, f"each attempt's newest must survive: {sorted(steps)}{why}"
    for step in (40, 33):
        reader.load_verified(remote, layout.step_dirname(step))
    fresh = LocalStore(tmp_path / "c")
    assert Syncer(fresh, remote).restore_newest() == 40  # the newest step wins
