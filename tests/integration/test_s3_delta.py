"""Delta uploads against the real S3 server (versitygw): a checkpoint whose previous one is
durable sends only its changed parts, the rest copied by S3 (UploadPartCopy); the objects
stay whole, byte for byte, and the checkpoints restore."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from botocore.exceptions import ClientError

from spotrun import Checkpointer, layout, mirror
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store, TransferSettings

pytestmark = pytest.mark.integration

PART = 5 * 2**20  # the smallest part S3 allows
TENSORS = layout.TENSORS


def _model() -> torch.nn.Module:
    """A frozen backbone of about 32 MiB and a small head (the part a fine-tune changes)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1024, 4096), torch.nn.Linear(4096, 1024), torch.nn.Linear(1024, 16)
    )


def _save(directory: Path, model: torch.nn.Module, step: int) -> None:
    with Checkpointer(directory, model=model, keep=10, handle_signals=False) as ckpt:
        ckpt.global_step = step - 1
        ckpt.step()
        ckpt.save(wait=True)


def _two_checkpoints(local: LocalStore) -> torch.nn.Module:
    """Step 1, then step 2 after the head (only) was trained; returns the model at step 2."""
    model = _model()
    _save(local.root, model, 1)
    with torch.no_grad():
        model[2].weight.add_(1.0)
    _save(local.root, model, 2)
    return model


def _changed_part_bytes(a: Path, b: Path) -> int:
    """Bytes of the parts (of PART bytes) in which two files of equal size differ."""
    x, y = a.read_bytes(), b.read_bytes()
    assert len(x) == len(y)
    return sum(
        len(x[i : i + PART]) for i in range(0, len(x), PART) if x[i : i + PART] != y[i : i + PART]
    )


def _store(s3: Any, bucket: str, **settings: Any) -> S3Store:
    return S3Store(
        bucket,
        "job",
        endpoint=s3.endpoint_url,
        settings=TransferSettings(part_size=PART, **settings),
    )


def _object(remote: S3Store, name: str, path: str) -> bytes:
    answer = remote.client.get_object(Bucket=remote.bucket, Key=remote.key(name, path))
    return bytes(answer["Body"].read())


def _restores(remote: S3Store, tmp: Path, model: torch.nn.Module) -> None:
    """The newest checkpoint in S3 downloads verified and loads the model's exact weights."""
    fresh = LocalStore(tmp / "restored")
    mirror.download(remote, layout.step_dirname(2), fresh, mirror.decoded)
    other = _model()
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    with Checkpointer(fresh.root, model=other, handle_signals=False) as ckpt:
        assert ckpt.restore() == 2
    for mine, theirs in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs)


@dataclass
class Pair:
    """Two checkpoints on disk, step 1 and step 2 after the head was trained."""

    local: LocalStore
    model: torch.nn.Module  # at step 2
    first: str = layout.step_dirname(1)
    second: str = layout.step_dirname(2)

    @property
    def tensors(self) -> int:
        return (self.local.path(self.second) / TENSORS).stat().st_size

    @property
    def small(self) -> int:
        """The other payload files of step 2 together (state.json)."""
        folder = self.local.path(self.second)
        return sum(f.stat().st_size for f in folder.iterdir() if f.name not in SKIP)

    def local_tensors(self) -> bytes:
        return (self.local.path(self.second) / TENSORS).read_bytes()

    def upload_both(self, remote: S3Store) -> int:
        """Step 1, then step 2, through the commit protocol: the bytes step 2 sent."""
        assert mirror.upload(self.local, self.first, remote)
        before = remote.sent_bytes
        assert mirror.upload(self.local, self.second, remote)
        return remote.sent_bytes - before


SKIP = {TENSORS, layout.MANIFEST}


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    local = LocalStore(tmp_path / "node")
    return Pair(local, _two_checkpoints(local))


@pytest.mark.usefixtures("s3_credentials")
def test_a_second_checkpoint_sends_only_its_changed_parts_and_restores(
    s3: Any, s3_bucket: str, tmp_path: Path, pair: Pair
) -> None:
    changed = _changed_part_bytes(
        pair.local.path(pair.first) / TENSORS, pair.local.path(pair.second) / TENSORS
    )
    assert pair.tensors > 6 * PART and 0 < changed <= PART  # the head sits in one part

    remote = _store(s3, s3_bucket)
    assert pair.upload_both(remote) == changed + pair.small  # the changed part, state.json
    assert remote.copied_bytes == pair.tensors - changed
    assert _object(remote, pair.second, TENSORS) == pair.local_tensors()
    _restores(remote, tmp_path, pair.model)


@pytest.mark.usefixtures("s3_credentials")
def test_the_previous_object_deleted_mid_upload_falls_back_to_sending(
    s3: Any, s3_bucket: str, tmp_path: Path, pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    remote = _store(s3, s3_bucket, concurrency=1)  # parts in order: the deletion lands between
    assert mirror.upload(pair.local, pair.first, remote)
    deleted: list[bool] = []

    def retention_runs_after_the_first_copy(_: int) -> None:
        if remote.copied_bytes and not deleted:
            remote.client.delete_object(Bucket=s3_bucket, Key=remote.key(pair.first, TENSORS))
            deleted.append(True)

    before = remote.sent_bytes
    with caplog.at_level(logging.INFO, logger="spotrun"):
        source = pair.local.path(pair.second) / TENSORS
        remote.upload_file(pair.second, TENSORS, source, retention_runs_after_the_first_copy)
    assert remote.copied_bytes == PART  # one part copied before the deletion, no more
    assert remote.sent_bytes - before == pair.tensors - PART
    assert "cannot copy unchanged parts from" in caplog.text
    assert _object(remote, pair.second, TENSORS) == pair.local_tensors()
    folder = pair.local.path(pair.second)
    remote.upload_file(pair.second, layout.STRUCTURE, folder / layout.STRUCTURE)
    remote.put_bytes(pair.second, layout.MANIFEST, (folder / layout.MANIFEST).read_bytes())
    _restores(remote, tmp_path, pair.model)


@pytest.mark.usefixtures("s3_credentials")
def test_spotrun_s3_delta_0_sends_every_byte(
    s3: Any, s3_bucket: str, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTRUN_S3_PART_MB", "5")
    monkeypatch.setenv("SPOTRUN_S3_DELTA", "0")
    remote = S3Store.from_uri(f"s3://{s3_bucket}/job", endpoint=s3.endpoint_url)
    assert pair.upload_both(remote) == pair.tensors + pair.small
    assert remote.copied_bytes == 0


@pytest.mark.usefixtures("s3_credentials")
def test_a_server_without_upload_part_copy_turns_the_delta_off_once(
    s3: Any, s3_bucket: str, tmp_path: Path, pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    remote = _store(s3, s3_bucket)
    refused: list[int] = []

    def no_copy(**kwargs: Any) -> Any:
        refused.append(kwargs["PartNumber"])
        raise ClientError({"Error": {"Code": "NotImplemented"}}, "UploadPartCopy")

    remote.client.upload_part_copy = no_copy
    with caplog.at_level(logging.WARNING, logger="spotrun"):
        assert pair.upload_both(remote) == pair.tensors + pair.small
    assert remote.copied_bytes == 0
    assert caplog.text.count("delta uploads off for this run") == 1
    assert 1 <= len(refused) <= 8  # the parts already asking when the first refusal came
    assert not remote.parts.enabled
    _restores(remote, tmp_path, pair.model)


@pytest.mark.usefixtures("s3_credentials")
def test_a_delta_upload_whose_completion_fails_is_retried_sending_every_part(
    s3: Any, s3_bucket: str, tmp_path: Path, pair: Pair
) -> None:
    remote = _store(s3, s3_bucket)
    assert mirror.upload(pair.local, pair.first, remote)
    real = remote.client.complete_multipart_upload
    refused: list[str] = []

    def refuse_copied_parts_once(**kwargs: Any) -> Any:
        if not refused:  # a server that will not complete an upload of copied parts
            refused.append(kwargs["Key"])
            raise ClientError({"Error": {"Code": "InvalidPart"}}, "CompleteMultipartUpload")
        return real(**kwargs)

    remote.client.complete_multipart_upload = refuse_copied_parts_once
    source = pair.local.path(pair.second) / TENSORS
    with pytest.raises(Exception, match="InvalidPart"):
        remote.upload_file(pair.second, TENSORS, source)
    copied, sent = remote.copied_bytes, remote.sent_bytes
    assert copied > 0
    remote.upload_file(pair.second, TENSORS, source)  # the sidecar's next try
    assert remote.copied_bytes == copied and remote.sent_bytes - sent == pair.tensors
    assert _object(remote, pair.second, TENSORS) == pair.local_tensors()


@pytest.mark.usefixtures("s3_credentials")
def test_a_copy_throttled_sends_that_part_and_the_others_still_copy(
    s3: Any, s3_bucket: str, pair: Pair
) -> None:
    remote = _store(s3, s3_bucket, concurrency=1)
    real = remote.client.upload_part_copy
    throttled: list[int] = []

    def slow_down_once(**kwargs: Any) -> Any:
        if not throttled:
            throttled.append(kwargs["PartNumber"])
            raise ClientError({"Error": {"Code": "SlowDown"}}, "UploadPartCopy")
        return real(**kwargs)

    remote.client.upload_part_copy = slow_down_once
    changed = _changed_part_bytes(
        pair.local.path(pair.first) / TENSORS, pair.local.path(pair.second) / TENSORS
    )
    assert pair.upload_both(remote) == changed + PART + pair.small
    assert remote.copied_bytes == pair.tensors - changed - PART
    assert remote.parts.get(TENSORS) is not None  # the record kept: the next upload copies
    assert _object(remote, pair.second, TENSORS) == pair.local_tensors()


@pytest.mark.usefixtures("s3_credentials")
def test_a_part_sent_in_a_delta_upload_that_changes_on_its_way_is_refused_by_s3(
    s3: Any, s3_bucket: str, pair: Pair
) -> None:
    remote = _store(s3, s3_bucket)
    assert mirror.upload(pair.local, pair.first, remote)
    real = remote.client.upload_part

    def flip_a_bit(**kwargs: Any) -> Any:  # the part's bytes differ from its Content-MD5
        body = bytearray(kwargs["Body"])
        body[0] ^= 1
        return real(**{**kwargs, "Body": bytes(body)})

    remote.client.upload_part = flip_a_bit
    source = pair.local.path(pair.second) / TENSORS
    with pytest.raises(Exception, match="BadDigest|InvalidDigest|Content-MD5"):
        remote.upload_file(pair.second, TENSORS, source)
    assert remote.client.list_objects_v2(
        Bucket=s3_bucket, Prefix=remote.key(pair.second, TENSORS)).get("KeyCount") == 0
