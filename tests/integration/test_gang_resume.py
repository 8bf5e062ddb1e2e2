"""A 2-node x 2-process gang of examples/ddp under torchrun: two torchrun processes on 127.0.0.1
(static rendezvous), each "node" with its own checkpoint directory and the SPOTRUN_* gang env the
operator sets. SIGTERM to one node's torchrun stops all 4 ranks at the same step; restarted, the
gang loses no step and ends with the weights of an uninterrupted run, bit for bit; a checkpoint
missing one rank's part is never restored; one node resumes the 2-node checkpoint and the epoch's
sample order continues (no sample skipped or seen twice).

Between attempts ``restore_like_the_sidecar`` copies every node's checkpoint folders into every
node's directory: what each pod's sidecar does from S3 before its trainer starts (lane B2).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from spotrun import layout, reader, tensorfile
from spotrun.localstore import LocalStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
SCRIPT = str(ROOT / "examples" / "ddp" / "train.py")
ARGS = ["--epochs", "2", "--save-every", "10"]  # 23 steps an epoch at 4 ranks x 16
WAIT_SECONDS = 600.0  # a loaded 2-core machine; the runs take tens of seconds idle


@dataclass
class Gang:
    nodes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def wait(self) -> list[int]:
        return [p.wait(timeout=WAIT_SECONDS) for p in self.nodes]

    def text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(base: Path, nnodes: int, nproc: int, trace: Path, *extra: str) -> Gang:
    """``nnodes`` torchrun processes, node k keeping checkpoints in ``base/node-k``."""
    port = _free_port()
    base.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTRUN_")}
    nodes, logs = [], []
    for node in range(nnodes):
        node_env = {
            **env,
            "OMP_NUM_THREADS": "1",
            "SPOTRUN_CHECKPOINT_DIR": str(base / f"node-{node}"),
            "SPOTRUN_NNODES": str(nnodes),
            "SPOTRUN_NODE_RANK": str(node),
            "SPOTRUN_NPROC_PER_NODE": str(nproc),
        }
        command = [
            TORCHRUN,
            f"--nnodes={nnodes}",
            f"--nproc-per-node={nproc}",
            f"--node-rank={node}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            SCRIPT,
            *ARGS,
            "--trace",
            str(trace),
            *extra,
        ]
        log = base / f"node-{node}-{time.monotonic_ns()}.log"
        with open(log, "wb") as out:
            nodes.append(
                subprocess.Popen(
                    command,
                    env=node_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        logs.append(log)
    return Gang(nodes, logs)


def trace_lines(trace: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in sorted(trace.glob("*.jsonl")) for line in f.open()]


def wait_for_step(trace: Path, step: int, gang: Gang) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not any(line.get("step", 0) >= step for line in trace_lines(trace)):  # type: ignore[operator]
        assert all(p.poll() is None for p in gang.nodes), gang.text()[-3000:]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.2)


def wait_for_exit(pids: list[int]) -> None:
    """Until none of ``pids`` runs (gone, or a zombie not reaped yet)."""
    deadline = time.monotonic() + WAIT_SECONDS

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    while any(running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} never exited"
        time.sleep(0.2)


def worker_pids(trace: Path, ranks: range) -> list[int]:
    """The pids of ``ranks`` (examples/ddp names each trace file by rank and pid)."""
    found = [f.stem.split("-") for f in trace.glob("rank-*.jsonl")]
    return [int(parts[5]) for parts in found if int(parts[1]) in ranks]


def restore_like_the_sidecar(base: Path, nnodes: int) -> None:
    """Every node's checkpoint folders into every node's directory (files missing there)."""
    dirs = [base / f"node-{n}" / layout.CHECKPOINTS for n in range(nnodes)]
    for source in dirs:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                for target in dirs:
                    copy = target / path.relative_to(source)
                    if not copy.exists():
                        copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, copy)


def next_attempt(base: Path, copy: Path) -> set[Path]:
    """A copy of the stopped gang's directories, each node's restored as its sidecar would;
    returns the trace files of the attempts so far."""
    shutil.copytree(base, copy)
    restore_like_the_sidecar(copy, 2)
    return set((copy / "trace").glob("*.jsonl"))


def run_attempt(base: Path, nnodes: int, before: set[Path], restores: int, *extra: str) -> Gang:
    """Run the next attempt on ``nnodes`` x 2 to its end; every rank restored ``restores``."""
    gang = launch(base, nnodes, 2, base / "trace", *extra)
    assert gang.wait() == [0] * nnodes, gang.text()[-4000:]
    assert restored_steps(base / "trace", before) == {restores}
    return gang


def final_model(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    loaded = reader.newest_valid(LocalStore(checkpoint_dir))
    assert loaded is not None
    tensors = tensorfile.load(loaded.files[layout.TENSORS])
    return {k: t.clone() for k, t in tensors.items() if k.startswith("model/")}


def restored_steps(trace: Path, after: set[Path]) -> set[int]:
    return {
        int(json.loads(line)["restored"])
        for f in trace.glob("*.jsonl")
        if f not in after
        for line in f.open()
        if "restored" in line
    }


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A 2x2 gang whose node 1 got SIGTERM mid-training: (its base dir, the step saved)."""
    base = tmp_path_factory.mktemp("gang")
    gang = launch(base, 2, 2, base / "trace", "--step-delay", "0.05")
    wait_for_step(base / "trace", 14, gang)
    gang.nodes[1].send_signal(signal.SIGTERM)  # torchrun forwards it to its 2 workers
    gang.nodes[1].wait(timeout=WAIT_SECONDS)
    # node 0's workers save and exit 0 too; its torchrun then waits in its exit barrier for
    # node 1's agent (gone) for 300 s, deaf to SIGTERM: the operator deletes the gang's other
    # pods (SIGKILL at the grace end), so does this test once node 0's workers are gone
    wait_for_exit(worker_pids(base / "trace", range(2)))
    gang.nodes[0].kill()
    gang.wait()
    saved = {
        int(line.split("saved step ")[1].split(" ")[0])
        for line in gang.text().splitlines()
        if "(preemption)" in line and "saved step" in line
    }
    assert len(saved) == 1, gang.text()[-4000:]
    yield base, saved.pop()


def test_sigterm_to_one_node_saves_one_step_on_every_rank_and_resumes_bit_exact(
    stopped: tuple[Path, int], tmp_path: Path
) -> None:
    base, step = stopped
    name = layout.step_dirname(step)
    head = json.loads((base / "node-0" / "checkpoints" / name / layout.MANIFEST).read_text())
    assert head["reason"] == "preemption" and head["world"]["world_size"] == 4
    part = json.loads((base / "node-1" / "checkpoints" / name / layout.part_name(1)).read_text())
    assert sorted(f["path"] for f in part["files"]) == [
        f"{layout.rank_dirname(r)}/{p}" for r in (2, 3) for p in sorted(layout.PAYLOAD)
    ]
    assert not (base / "node-1" / "checkpoints" / name / layout.MANIFEST).exists()

    resumed = tmp_path / "resumed"
    before = next_attempt(base, resumed)
    run_attempt(resumed, 2, before, step)  # all 4 ranks restore the step saved: 0 steps lost

    reference = launch(tmp_path / "reference", 2, 2, tmp_path / "reference-trace")
    assert reference.wait() == [0, 0], reference.text()[-4000:]
    restore_like_the_sidecar(resumed, 2)  # node 0 alone holds rank 0's part and the manifest
    restore_like_the_sidecar(tmp_path / "reference", 2)
    got = final_model(resumed / "node-0")
    want = final_model(tmp_path / "reference" / "node-0")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_checkpoint_missing_one_ranks_part_is_never_restored(
    stopped: tuple[Path, int], tmp_path: Path
) -> None:
    base, step = stopped
    copy = tmp_path / "gang"
    before = next_attempt(base, copy)
    older = max(s for s in range(10, step, 10))
    lost = copy / "node-1" / "checkpoints" / layout.step_dirname(step) / "rank-00003" / "state.json"
    lost.unlink()  # node 1's copy lacks rank 3's part; node 0's copy is whole
    gang = run_attempt(copy, 2, before, older, "--epochs", "1")
    assert "rank 3 (node 1) cannot load it" in gang.text()


def test_one_node_resumes_the_two_node_checkpoint_without_skipping_a_sample(
    stopped: tuple[Path, int], tmp_path: Path
) -> None:
    base, step = stopped
    copy = tmp_path / "gang"
    before = next_attempt(base, copy)
    trace = copy / "trace"
    first = [json.loads(line) for f in sorted(before) for line in f.open()]
    run_attempt(copy, 1, before, step)  # 1 node x 2: world size 2 instead of 4
    later = [
        json.loads(line) for f in trace.glob("*.jsonl") if f not in before for line in f.open()
    ]
    epoch = next(line["epoch"] for line in first if line.get("step") == step)
    ids = [
        i
        for line in first
        if line.get("epoch") == epoch and int(line["step"]) <= step  # type: ignore[call-overload]
        for i in line["ids"]  # type: ignore[union-attr]
    ]
    ids += [i for line in later if line.get("epoch") == epoch for i in line["ids"]]
    assert sorted(ids) == list(range(1437))  # the digits training split, once each
