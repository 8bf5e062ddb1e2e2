from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer, CheckpointMismatchError, KeepBest, UnknownFormatError, layout
from tests.unit.conftest import Net, train_steps

pytestmark = pytest.mark.unit


def _new(ckdir: Path, **kw: object) -> tuple[Checkpointer, Net, torch.optim.Optimizer]:
    model = Net(kw.pop("width", 8))  # type: ignore[arg-type]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return Checkpointer(ckdir, model=model, optimizer=opt, handle_signals=False, **kw), model, opt  # type: ignore[arg-type]


def _folder(ckdir: Path, step: int) -> Path:
    return ckdir / layout.CHECKPOINTS / layout.step_dirname(step)


def test_first_start_on_an_empty_directory_starts_from_scratch(ckdir: Path, spotrun_log) -> None:
    ckpt, _, _ = _new(ckdir)
    assert ckpt.restore() == 0
    assert "starting from scratch" in spotrun_log.text


def test_restores_model_optimizer_and_step_exactly(ckdir: Path) -> None:
    ckpt, model, opt = _new(ckdir)
    train_steps(ckpt, model, opt, 5)
    ckpt.close()
    again, model2, opt2 = _new(ckdir)
    assert again.restore() == 5
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(
        opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"]
    )


def test_checkpoint_of_another_model_is_refused_naming_the_differences(ckdir: Path) -> None:
    ckpt, model, opt = _new(ckdir)
    train_steps(ckpt, model, opt, 2)
    ckpt.close()
    other, _, _ = _new(ckdir, width=16)
    with pytest.raises(CheckpointMismatchError) as info:
        other.restore()
    message = str(info.value)
    assert "fc.weight: checkpoint (8, 4) vs model (16, 4)" in message
    assert "another model" in message and "step-000000000002" in message


def test_unknown_format_version_is_refused(ckdir: Path) -> None:
    ckpt, model, opt = _new(ckdir)
    train_steps(ckpt, model, opt, 1)
    ckpt.close()
    manifest = _folder(ckdir, 1) / layout.MANIFEST
    raw = json.loads(manifest.read_text())
    raw["format_version"] = 99
    manifest.write_text(json.dumps(raw))
    with pytest.raises(UnknownFormatError, match="format version 99.*reads version 1"):
        _new(ckdir)[0].restore()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_payload_is_skipped_and_the_previous_checkpoint_used(
    ckdir: Path, spotrun_log, damage: str
) -> None:
    ckpt, model, opt = _new(ckdir, interval_steps=3)
    train_steps(ckpt, model, opt, 6)
    ckpt.close()
    payload = _folder(ckdir, 6) / layout.TENSORS
    blob = bytearray(payload.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 2] ^= 0x01
    payload.write_bytes(bytes(blob))
    assert _new(ckdir)[0].restore() == 3
    assert f"{payload}" in spotrun_log.text
    assert ("truncated" if damage == "truncate" else "CRC32C") in spotrun_log.text


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {os.environ['SPOTRUN_TEST_MARKER']}",))


def test_a_payload_crafted_to_run_code_on_unpickling_is_never_executed(
    ckdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spotrun_log
) -> None:
    ckpt, model, opt = _new(ckdir)
    train_steps(ckpt, model, opt, 2)
    ckpt.close()
    marker = tmp_path / "pwned"
    monkeypatch.setenv("SPOTRUN_TEST_MARKER", str(marker))
    evil = pickle.dumps({"model": _Exploit()})
    folder = _folder(ckdir, 2)
    for name in (
        layout.TENSORS,
        layout.STRUCTURE,
    ):  # both payload files replaced, manifest re-signed
        (folder / name).write_bytes(evil)
    from spotrun import checksum

    manifest = json.loads((folder / layout.MANIFEST).read_text())
    for entry in manifest["files"]:
        entry["size"] = len(evil)
        entry["crc32c"] = checksum.to_hex(checksum.of_bytes(evil))
    (folder / layout.MANIFEST).write_text(json.dumps(manifest))
    assert _new(ckdir)[0].restore() == 0  # skipped as undecodable: a fresh start
    assert "cannot be decoded" in spotrun_log.text
    assert not marker.exists()
    pickle.loads(evil)  # the same bytes through pickle would have run the command
    assert marker.exists()


def test_an_exception_escaping_the_loop_saves_the_last_consistent_state(ckdir: Path) -> None:
    ckpt, model, opt = _new(ckdir)
    with pytest.raises(RuntimeError, match="boom"), ckpt:
        train_steps(ckpt, model, opt, 4)
        model(torch.randn(2, 4)).sum().backward()  # a step that fails before the optimizer
        raise RuntimeError("boom")
    manifest = json.loads((_folder(ckdir, 4) / layout.MANIFEST).read_text())
    assert manifest["reason"] == "emergency"


def test_no_emergency_save_of_a_half_updated_model(ckdir: Path, spotrun_log) -> None:
    ckpt, model, opt = _new(ckdir, interval_steps=2)

    def explode(*_: object) -> None:
        raise RuntimeError("fault inside optimizer.step")

    with pytest.raises(RuntimeError), ckpt:
        train_steps(ckpt, model, opt, 3)
        opt.register_step_post_hook(explode)
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
    assert sorted(os.listdir(ckdir / layout.CHECKPOINTS)) == [layout.step_dirname(2)]
    assert "last consistent state is the checkpoint of step 2" in spotrun_log.text


def test_retention_keeps_the_newest_and_the_best(ckdir: Path) -> None:
    ckpt, model, opt = _new(ckdir, interval_steps=1, keep=2, keep_best=KeepBest("score", "max"))
    for step in range(1, 7):
        ckpt.record(score=10.0 if step == 2 else float(step) / 10)
        train_steps(ckpt, model, opt, 1)
        ckpt.wait()
    ckpt.close()
    names = sorted(os.listdir(ckdir / layout.CHECKPOINTS))
    assert names == [layout.step_dirname(s) for s in (2, 5, 6)]


def test_tensors_saved_from_a_gpu_come_back_on_the_device_at_hand(ckdir: Path) -> None:
    ckpt, model, opt = _new(ckdir, extras={"ema": torch.ones(3)})
    train_steps(ckpt, model, opt, 1)
    ckpt.close()
    structure = _folder(ckdir, 1) / layout.STRUCTURE
    doc = json.loads(structure.read_text())
    doc["extras"]["ema"]["device"] = "cuda"  # as written by a run on a GPU
    structure.write_text(json.dumps(doc))
    from spotrun import checksum

    manifest_path = _folder(ckdir, 1) / layout.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        size, crc = checksum.of_file(_folder(ckdir, 1) / entry["path"])
        entry.update(size=size, crc32c=checksum.to_hex(crc))
    manifest_path.write_text(json.dumps(manifest))
    again, _, _ = _new(ckdir, extras={})
    again.restore()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert again.components.extras["ema"].device.type == expected
    assert torch.equal(again.components.extras["ema"].cpu(), torch.ones(3))


def test_a_failed_background_write_is_reported_and_retried_at_close(
    ckdir: Path, spotrun_log, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spotrun import writer

    real_write = writer.write
    failures = iter([OSError(28, "No space left on device")])

    def flaky(*args: object, **kwargs: object) -> Path:
        for error in failures:
            raise error
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "write", flaky)
    ckpt, model, opt = _new(ckdir, interval_steps=2)
    train_steps(ckpt, model, opt, 2)
    ckpt.wait()
    assert isinstance(ckpt.write_error, OSError)
    assert "saving step 2" in spotrun_log.text and "No space left" in spotrun_log.text
    ckpt.close()  # the final save retries and succeeds
    assert ckpt.durable_step == 2 and ckpt.write_error is None
    assert (_folder(ckdir, 2) / layout.MANIFEST).exists()


def test_periodic_snapshots_hold_the_boundary_state_while_training_runs_on(ckdir: Path) -> None:
    """Parameters and optimizer state are copied in the writer thread during the next step;
    the optimizer waits for that copy, so each checkpoint holds exactly its step's values."""
    from spotrun import reader
    from spotrun.localstore import LocalStore

    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.BatchNorm1d(512))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    ckpt = Checkpointer(
        ckdir, model=model, optimizer=opt, interval_steps=1, keep=100, handle_signals=False
    )
    expected = {}
    for _ in range(8):
        loss = model(torch.randn(16, 256)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ckpt.step()
        expected[ckpt.global_step] = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt.close()
    store = LocalStore(ckdir)
    for step, state in expected.items():
        saved = reader.decode_state(reader.load_verified(store, layout.step_dirname(step)))
        for key, value in state.items():
            assert torch.equal(saved["model"][key], value), (step, key)


def _readme_loop(
    ckdir: Path, epochs: int, fail_at_epoch_end: int | None = None
) -> tuple[Checkpointer, torch.nn.Module, torch.optim.Optimizer, dict[str, int]]:
    """The README's loop: a scheduler stepped per epoch, evaluation bookkeeping in extras after
    the last step of the epoch; optionally failing there."""
    from torch.utils.data import TensorDataset

    from spotrun import ResumableLoader

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loader = ResumableLoader(TensorDataset(torch.randn(12, 4)), batch_size=4, seed=0)
    extras = {"evaluations": 0}
    with Checkpointer(
        ckdir,
        model=model,
        optimizer=opt,
        scheduler=sched,
        loader=loader,
        extras=extras,
        interval_steps=100,
        handle_signals=False,
    ) as ckpt:
        ckpt.restore()
        for epoch in loader.epochs(epochs):
            for (x,) in loader:
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
                ckpt.step()
            sched.step()
            extras["evaluations"] += 1
            if epoch == fail_at_epoch_end:
                raise RuntimeError("evaluation failed")
    return ckpt, model, opt, extras


def test_an_exception_in_end_of_epoch_work_saves_the_scheduler_of_the_last_step(
    ckdir: Path, tmp_path: Path
) -> None:
    """The emergency save after sched.step() and evaluation holds step 3's scheduler and
    extras (as the model and loader are), so the resumed run equals an uninterrupted one."""
    with pytest.raises(RuntimeError, match="evaluation failed"):
        _readme_loop(ckdir, epochs=3, fail_at_epoch_end=0)
    ckpt, model, opt, extras = _readme_loop(ckdir, epochs=3)
    ref_ckpt, ref_model, ref_opt, ref_extras = _readme_loop(tmp_path / "reference", epochs=3)
    sched, ref_sched = ckpt.components.scheduler, ref_ckpt.components.scheduler
    assert sched is not None and ref_sched is not None
    assert sched.state_dict()["last_epoch"] == ref_sched.state_dict()["last_epoch"] == 3
    assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] == 0.1 / 8
    assert extras == ref_extras == {"evaluations": 3}
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("marked", "why"),
    [
        # a plain in-place update (no optimizer, no marker) is seen by the tensors' versions
        (False, "model.fc.weight was changed in place after step 3"),
        # ``.data`` updates (as in PyTorch's word_language_model) bump no version: marked
        (True, "an exception left a parameter update (with ckpt.updating()) half done"),
    ],
)
def test_no_emergency_save_of_a_half_applied_hand_written_update(
    ckdir: Path, spotrun_log, marked: bool, why: str
) -> None:
    model = Net()
    ckpt = Checkpointer(ckdir, model=model, interval_steps=2, handle_signals=False)
    with pytest.raises(RuntimeError, match="fault mid-update"), ckpt:
        for _ in range(4):
            model.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            with ckpt.updating() if marked else torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    if ckpt.global_step == 3 and i == 2:
                        raise RuntimeError("fault mid-update")
                    if marked:
                        p.data.add_(p.grad, alpha=-0.1)  # type: ignore[arg-type]
                    else:
                        p -= 0.1 * p.grad  # type: ignore[operator]
            ckpt.step()
    assert sorted(os.listdir(ckdir / layout.CHECKPOINTS)) == [layout.step_dirname(2)]
    assert why in spotrun_log.text
    assert "last consistent state is the checkpoint of step 2" in spotrun_log.text


def test_a_save_between_an_update_and_its_step_is_refused(ckdir: Path) -> None:
    from spotrun.checkpointer import InconsistentStateError

    ckpt, model, opt = _new(ckdir)
    train_steps(ckpt, model, opt, 1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    with pytest.raises(InconsistentStateError, match=r"optimizer.step\(\) changed .* after step 1"):
        ckpt.save()
    ckpt.step()
    ckpt.save()
    assert ckpt.durable_step == 2
