"""Checkpoint benchmark: spotrun vs ``torch.save`` vs DCP ``async_save`` on a ~1 GiB state.

Run it with ``make bench`` (or ``.venv/bin/python bench/checkpoint_bench.py``; ``--reps N``,
``--dir DIR`` for the scratch directory, ``--json PATH`` to keep the raw figures). CPU only,
about 4 minutes on 2 cores; it needs ~7 GiB of RAM and ~6 GiB of free disk under ``--dir``.

The state: 8 ``Linear(3344, 3344)`` layers (89.5M float32 parameters) plus Adam's two moments,
created by one real optimizer step: 1.0 GiB. Every goal is a ratio of two things measured side
by side in this one run, the repetitions interleaved so that the noise of a shared machine hits
both sides alike; each figure is the median of ``--reps`` repetitions (>= 3).

1. stall per periodic save: ``save(reason="periodic", wait=False)`` returning, vs a synchronous
   ``torch.save`` + fsync, vs DCP ``async_save`` with one reused ``DefaultStager``;
2. training-step time while a background save is in flight vs without one;
3. ``save(reason="preemption", wait=True)`` vs a raw ``os.write`` + ``os.fsync`` of as many
   bytes, and SIGTERM-to-exit of a training subprocess (the final checkpoint verified);
4. ``Checkpointer(...).restore()`` into a fresh model vs a raw read of the same files
   (page cache warm for both);
5. host memory kept for snapshots (``ckpt._buffer.capacity``, VmRSS / VmHWM deltas).

bench/RESULTS.md holds a run of it with notes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import mmap
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from spotrun import Checkpointer
from spotrun.localstore import LocalStore
from spotrun.reader import newest_valid

WIDTH = 3344
LAYERS = 8
BATCH = 4
GiB = 1024**3

Timings = dict[str, list[float]]


# -- the training state ------------------------------------------------------------------


def build(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i in range(LAYERS):
        layers.append(torch.nn.Linear(WIDTH, WIDTH))
        if i < LAYERS - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    # fused: one pass over the moments; the default foreach Adam takes ~0.7 s per step here
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    return model, optimizer


class Trainer:
    """A real forward/backward/Adam step on a small batch."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(BATCH, WIDTH, generator=gen)
        self.y = torch.randn(BATCH, WIDTH, generator=gen)

    def step(self, before_update: Callable[[], None] | None = None) -> float:
        started = time.perf_counter()
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        loss.backward()
        if before_update is not None:
            before_update()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)
        return time.perf_counter() - started

    def steps(self, n: int) -> list[float]:
        return [self.step() for _ in range(n)]


def state_dict(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for per_param in optimizer.state.values():
        total += sum(
            t.numel() * t.element_size() for t in per_param.values() if isinstance(t, torch.Tensor)
        )
    return total


# -- small helpers -----------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired(ours: list[float], theirs: list[float]) -> float:
    """Median of the per-repetition ratios (the two sides ran back to back each time)."""
    return med([a / b for a, b in zip(ours, theirs, strict=False) if b > 0])


def proc_status(field: str) -> int:
    """VmRSS / VmHWM of this process, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def newest_checkpoint(root: Path) -> Path:
    folders = sorted((root / "checkpoints").glob("step-*"))
    return folders[-1]


def read_fresh(paths: list[Path]) -> int:
    """Read files into newly allocated buffers, exactly as a loader must (open + readinto)."""
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            blob = bytearray(size)
            view = memoryview(blob)
            done = 0
            while done < size and (n := f.readinto(view[done:])):
                done += n
            total += done
            del view, blob
    return total


def read_into(paths: list[Path], buffer: bytearray) -> int:
    """Read files into one already-allocated buffer (no first-touch of new memory)."""
    total = 0
    view = memoryview(buffer)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            done = 0
            while n := f.readinto(view[done:]):
                done += n
            total += done
    return total


def touched_buffer(nbytes: int) -> mmap.mmap:
    """A page-aligned anonymous buffer, every page touched once (no first-touch later)."""
    buffer = mmap.mmap(-1, nbytes)
    page = b"\1" * mmap.PAGESIZE
    for start in range(0, nbytes - len(page) + 1, len(page)):
        buffer[start : start + len(page)] = page
    return buffer


def raw_write(path: Path, buffer: memoryview, direct: bool = False) -> None:
    """write + fsync; ``direct``: O_DIRECT (bypasses the page cache), length a block multiple."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags, 0o644)
    try:
        done = 0
        while done < len(buffer):
            done += os.write(fd, buffer[done:])
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- DCP ---------------------------------------------------------------------------------


class Dcp:
    """``torch.distributed.checkpoint.async_save`` with one reused ``DefaultStager``."""

    def __init__(self, scratch: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        self.dcp = dcp
        self.scratch = scratch
        self.config = (
            "async_save(no_dist=True), DefaultStager(pinned=False, shared=False, "
            "async_staging=True, non_blocking=False) reused"
        )
        self.stager = DefaultStager(
            StagingOptions(
                use_pinned_memory=False,
                use_shared_memory=False,
                use_async_staging=True,
                use_non_blocking_copy=False,
            )
        )
        self.no_dist = True
        self.errors: list[str] = []
        self.count = 0

    def start(self, state: dict[str, Any]) -> tuple[Future[Any] | None, Future[Any]]:
        """async_save; returns (staging done, upload done) futures."""
        self.count += 1
        folder = self.scratch / f"dcp-{self.count}"
        writer = self.dcp.FileSystemWriter(str(folder))
        response = self.dcp.async_save(
            state, storage_writer=writer, async_stager=self.stager, no_dist=self.no_dist
        )
        if isinstance(response, Future):
            return None, response
        return response.staging_completion, response.upload_completion

    def clean(self) -> None:
        for folder in self.scratch.glob("dcp-*"):
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self.stager.close()


def init_gloo(scratch: Path) -> None:
    import torch.distributed as dist

    store = dist.FileStore(str(scratch / "gloo-store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)


def make_dcp(scratch: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> Dcp:
    """A DCP that works: no_dist first; with a single-process gloo group if that fails."""
    dcp = Dcp(scratch)
    try:
        staged, done = dcp.start(state_dict(model, opt))
        done.result()
    except Exception as e:  # reported; then the closest configuration is tried
        dcp.errors.append(f"async_save(no_dist=True): {type(e).__name__}: {e}")
        init_gloo(scratch)
        dcp.no_dist = False
        dcp.config = dcp.config.replace("no_dist=True", "gloo process group")
        staged, done = dcp.start(state_dict(model, opt))
        done.result()
    dcp.clean()
    return dcp


# -- the measurements --------------------------------------------------------------------


def measure_memory(ckpt: Checkpointer, dcp_scratch: Path, model: Any, opt: Any) -> dict[str, Any]:
    """RSS growth for spotrun's first save (the buffer) and DCP's first save (its cache)."""
    out: dict[str, Any] = {}
    gc.collect()
    before = proc_status("VmRSS")
    out["hwm_reset"] = reset_peak_rss()
    ckpt.save(reason="periodic", wait=False)  # warm-up: allocates the snapshot buffer
    out["spotrun_rss_after_snapshot"] = proc_status("VmRSS") - before
    ckpt.wait()
    gc.collect()
    out["spotrun_rss_kept"] = proc_status("VmRSS") - before
    out["spotrun_peak"] = proc_status("VmHWM") - before
    out["spotrun_capacity"] = ckpt._buffer.capacity

    before = proc_status("VmRSS")
    reset_peak_rss()
    dcp = make_dcp(dcp_scratch, model, opt)  # warm-up save: the stager caches its copy
    gc.collect()
    out["dcp_rss_kept"] = proc_status("VmRSS") - before
    out["dcp_peak"] = proc_status("VmHWM") - before
    out["dcp"] = dcp
    return out


def measure_stall(
    reps: int, ckpt: Checkpointer, dcp: Dcp, model: Any, opt: Any, scratch: Path
) -> Timings:
    t: Timings = {k: [] for k in ("spot_stall", "spot_total", "torch_save", "dcp_return")}
    t.update({"dcp_staged": [], "dcp_total": []})
    for rep in range(reps):
        with quiet_gc():
            ckpt.step()
            started = time.perf_counter()
            ckpt.save(reason="periodic", wait=False)
            t["spot_stall"].append(time.perf_counter() - started)
            ckpt.wait()
            t["spot_total"].append(time.perf_counter() - started)

            path = scratch / f"torch-{rep}.pt"
            started = time.perf_counter()
            with open(path, "wb") as f:
                torch.save(state_dict(model, opt), f)
                f.flush()
                os.fsync(f.fileno())
            t["torch_save"].append(time.perf_counter() - started)
            path.unlink()

            started = time.perf_counter()
            staged, done = dcp.start(state_dict(model, opt))
            t["dcp_return"].append(time.perf_counter() - started)
            if staged is not None:
                staged.result()
            t["dcp_staged"].append(time.perf_counter() - started)
            done.result()
            t["dcp_total"].append(time.perf_counter() - started)
            dcp.clean()
    return t


def measure_steps(reps: int, trainer: Trainer, ckpt: Checkpointer, dcp: Dcp) -> dict[str, Any]:
    """Step times with no save, while spotrun writes, while DCP writes; per-rep ratios."""
    base_all: list[float] = []
    spot_all: list[float] = []
    dcp_all: list[float] = []
    spot_ratio: list[float] = []
    dcp_ratio: list[float] = []
    dcp_wait: list[float] = []
    spot_write: list[float] = []
    trainer.steps(2)  # warm
    for _ in range(reps):
        with quiet_gc():
            base = trainer.steps(3)

            ckpt.step()
            ckpt.save(reason="periodic", wait=False)
            writing = ckpt._write
            spot: list[float] = []
            while writing is not None and writing.is_alive() and len(spot) < 30:
                spot.append(trainer.step())
                ckpt.step()
            ckpt.wait()
            spot_write.append(ckpt.last_save_seconds)

            base += trainer.steps(3)

            staged, done = dcp.start(state_dict(trainer.model, trainer.optimizer))
            waited: list[float] = []

            def wait_staged(
                staged: Future[Any] | None = staged, waited: list[float] = waited
            ) -> None:
                started = time.perf_counter()
                if staged is not None:
                    staged.result()
                waited.append(time.perf_counter() - started)

            # the first optimizer update must wait until DCP has staged (copied) the state
            during = [trainer.step(before_update=wait_staged)]
            while not done.done() and len(during) < 30:
                during.append(trainer.step())
            done.result()
            dcp.clean()
            dcp_wait.append(waited[0])

        base_all += base
        spot_all += spot
        dcp_all += during
        spot_ratio.append(med(spot) / med(base))
        dcp_ratio.append(med(during) / med(base))
    return {
        "base": base_all,
        "spot": spot_all,
        "dcp": dcp_all,
        "spot_ratio": spot_ratio,
        "dcp_ratio": dcp_ratio,
        "dcp_first_step_wait": dcp_wait,
        "spot_write_seconds": spot_write,
    }


def measure_durable(reps: int, ckpt: Checkpointer, root: Path, scratch: Path) -> dict[str, Any]:
    ckpt.wait()
    nbytes = dir_bytes(newest_checkpoint(root))
    blocks = -(-nbytes // 4096) * 4096
    buffer = touched_buffer(blocks)  # allocated and touched once, outside the timing
    view = memoryview(buffer)
    out: Timings = {"spot": [], "raw": [], "raw_direct": []}
    kinds = list(out)
    for rep in range(reps):
        with quiet_gc():
            for which in kinds[rep % 3 :] + kinds[: rep % 3]:  # rotate the order
                path = scratch / f"raw-{rep}.bin"
                started = time.perf_counter()
                if which == "spot":
                    ckpt.step()
                    started = time.perf_counter()
                    ckpt.save(reason="preemption", wait=True)
                elif which == "raw":
                    raw_write(path, view[:nbytes])
                else:
                    try:
                        raw_write(path, view, direct=True)
                    except OSError:  # a file system without O_DIRECT (tmpfs)
                        path.unlink(missing_ok=True)
                        continue
                out[which].append(time.perf_counter() - started)
                path.unlink(missing_ok=True)
    del view
    buffer.close()
    return {"bytes": nbytes, **out}


def restore_once(
    root: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, nbytes: int
) -> tuple[float, bool]:
    """(seconds to restore, whether Adam's moments now view the buffer the file was read into)"""
    started = time.perf_counter()
    ckpt = Checkpointer(root, model=model, optimizer=opt, handle_signals=False)
    restored = ckpt.restore()
    seconds = time.perf_counter() - started
    ckpt.close()
    if restored != step:
        raise RuntimeError(f"restored step {restored}, expected {step}")
    moment = next(iter(opt.state.values()))["exp_avg"]
    return seconds, moment.untyped_storage().nbytes() >= nbytes // 2


def measure_restore(reps: int, root: Path, expected_step: int) -> dict[str, Any]:
    folder = newest_checkpoint(root)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    nbytes = read_fresh(files)  # page cache warm for both sides
    spot: list[float] = []
    raw: list[float] = []
    raw_prealloc: list[float] = []
    views_blob = False
    prealloc = bytearray(nbytes)
    kept: list[int] = []
    for rep in range(reps):
        model, opt = build(seed=100 + rep)  # fresh, outside the timing
        rss_before = proc_status("VmRSS")
        with quiet_gc():
            for which in ("spot", "raw") if rep % 2 == 0 else ("raw", "spot"):
                started = time.perf_counter()
                if which == "spot":
                    seconds, views_blob = restore_once(root, model, opt, expected_step, nbytes)
                    spot.append(seconds)
                    gc.collect()
                    kept.append(proc_status("VmRSS") - rss_before)
                else:
                    read_fresh(files)
                    raw.append(time.perf_counter() - started)
            started = time.perf_counter()
            read_into(files, prealloc)
            raw_prealloc.append(time.perf_counter() - started)
        del model, opt
        gc.collect()
    return {
        "bytes": nbytes,
        "spot": spot,
        "raw": raw,
        "raw_prealloc": raw_prealloc,
        "moments_view_read_buffer": views_blob,
        "rss_kept_after_restore": kept,
    }


# -- SIGTERM end to end: a training subprocess -------------------------------------------


def sigterm_child(directory: str) -> None:
    """A training loop as a user writes it; prints 'ready' once a periodic save is done."""
    model, opt = build()
    trainer = Trainer(model, opt)
    trainer.step()
    try:
        with Checkpointer(directory, model=model, optimizer=opt, handle_signals=True) as ckpt:
            ckpt.restore()
            ckpt.step()
            ckpt.save(reason="periodic", wait=True)  # as after earlier periodic saves
            announced = False
            while True:
                trainer.step()
                if ckpt.step():
                    return  # not reached: exit_on_preemption exits 0 from step()
                if not announced and ckpt.global_step >= 3:
                    print("ready", flush=True)
                    announced = True
    except SystemExit:
        print(f"exiting {time.time()}", flush=True)  # saved and closed; the interpreter ends
        raise


# A raw write + fsync of N bytes in a fresh process (a training process's write is also the
# first big write of a process that has just allocated its memory).
RAW_WRITE_CHILD = """
import mmap, os, sys, time
n, path = int(sys.argv[1]), sys.argv[2]
buf = mmap.mmap(-1, n)
page = b"\\1" * mmap.PAGESIZE
for i in range(0, n - len(page) + 1, len(page)):
    buf[i : i + len(page)] = page
view = memoryview(buf)
started = time.perf_counter()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
done = 0
while done < n:
    done += os.write(fd, view[done:])
os.fsync(fd)
os.close(fd)
print(time.perf_counter() - started)
"""


def measure_sigterm(reps: int, scratch: Path, delay: float) -> dict[str, Any]:
    """SIGTERM a training subprocess mid-step; time until its final checkpoint is durable
    and until it exits; then a raw write of as many bytes in a fresh process, to compare."""
    exit_s: list[float] = []
    durable_s: list[float] = []
    write_s: list[float] = []
    teardown_s: list[float] = []
    raw_s: list[float] = []
    for rep in range(reps):
        directory = scratch / f"sigterm-{rep}"
        progress = scratch / f"sigterm-{rep}.jsonl"
        env = dict(os.environ, SPOTRUN_PROGRESS_FILE=str(progress))
        proc = subprocess.Popen(
            [sys.executable, __file__, "--sigterm-child", str(directory)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"training subprocess did not get ready: {line!r}")
        time.sleep(delay)  # lands inside a step
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=300)
        exited = time.time()
        if rc != 0:
            raise RuntimeError(f"training subprocess exited {rc} after SIGTERM")
        tail = proc.stdout.read().split()
        events = [json.loads(x) for x in progress.read_text().splitlines() if x.strip()]
        saved = [e for e in events if e["event"] == "saved" and e.get("reason") == "preemption"]
        last_step = max(e["step"] for e in events if e["event"] == "step")
        loaded = newest_valid(LocalStore(directory))
        if not saved or loaded is None or loaded.step != last_step:
            raise RuntimeError(f"final checkpoint missing or not the newest ({saved}, {last_step})")
        nbytes = dir_bytes(directory / "checkpoints" / loaded.name)
        del loaded
        exit_s.append(exited - sent)
        durable_s.append(saved[-1]["t"] - sent)
        write_s.append(float(saved[-1]["seconds"]))
        if len(tail) == 2 and tail[0] == "exiting":
            teardown_s.append(exited - float(tail[1]))
        shutil.rmtree(directory, ignore_errors=True)

        path = scratch / f"sigterm-raw-{rep}.bin"
        cmd = [sys.executable, "-c", RAW_WRITE_CHILD, str(nbytes), str(path)]
        raw_s.append(float(subprocess.run(cmd, check=True, capture_output=True).stdout))
        path.unlink()
    return {
        "exit": exit_s,
        "durable": durable_s,
        "write": write_s,
        "interpreter_teardown": teardown_s,
        "raw_fresh_process": raw_s,
    }


# -- report ------------------------------------------------------------------------------


def fmt_s(x: float) -> str:
    return f"{x:.3f} s"


def fmt_gib(x: float) -> str:
    return f"{x / GiB:.2f} GiB"


def yes(ok: bool) -> str:
    return "**yes**" if ok else "**no**"


def report(r: dict[str, Any], reps: int, sigterm_reps: int) -> str:
    st, steps, dur, res, mem, sig = (
        r["stall"],
        r["steps"],
        r["durable"],
        r["restore"],
        r["memory"],
        r["sigterm"],
    )
    spot_stall = med(st["spot_stall"])
    torch_save = med(st["torch_save"])
    dcp_ret, dcp_staged = med(st["dcp_return"]), med(st["dcp_staged"])
    dcp_wait = med(steps["dcp_first_step_wait"])
    pairs = zip(st["dcp_return"], steps["dcp_first_step_wait"], strict=True)
    dcp_eff_each = [ret + wait for ret, wait in pairs]
    dcp_eff = med(dcp_eff_each)
    stall_ratio = paired(st["spot_stall"], st["torch_save"])
    stall_vs_ret = paired(st["spot_stall"], st["dcp_return"])
    stall_vs_staged = paired(st["spot_stall"], st["dcp_staged"])
    stall_vs_eff = paired(st["spot_stall"], dcp_eff_each)
    spot_step_ratio, dcp_step_ratio = med(steps["spot_ratio"]), med(steps["dcp_ratio"])
    dur_ratio = paired(dur["spot"], dur["raw"])
    raw_fresh = med(sig["raw_fresh_process"])
    res_ratio = paired(res["spot"], res["raw"])
    state = r["state_bytes"]
    cap = mem["spotrun_capacity"]
    rows = [
        ("Measurement", "spotrun", "baseline", "ratio", "goal", "met"),
        (
            "1. stall per periodic save vs `torch.save`+fsync",
            fmt_s(spot_stall),
            fmt_s(torch_save),
            f"{stall_ratio:.3f}",
            "<= 0.05",
            yes(stall_ratio <= 0.05),
        ),
        (
            "1. stall vs DCP `async_save` returning",
            fmt_s(spot_stall),
            fmt_s(dcp_ret),
            f"{stall_vs_ret:.2f}",
            "<= 1",
            yes(stall_vs_ret <= 1),
        ),
        (
            "1. stall vs DCP staged (state captured, optimizer may step)",
            fmt_s(spot_stall),
            fmt_s(dcp_staged),
            f"{stall_vs_staged:.2f}",
            "<= 1",
            yes(stall_vs_staged <= 1),
        ),
        (
            "1. stall vs DCP in a loop (return + first step's wait for staging)",
            fmt_s(spot_stall),
            fmt_s(dcp_eff),
            f"{stall_vs_eff:.2f}",
            "<= 1",
            yes(stall_vs_eff <= 1),
        ),
        (
            "1. save total (write durable) vs `torch.save`+fsync / DCP total",
            fmt_s(med(st["spot_total"])),
            f"{fmt_s(torch_save)} / {fmt_s(med(st['dcp_total']))}",
            f"{paired(st['spot_total'], st['torch_save']):.2f} / "
            f"{paired(st['spot_total'], st['dcp_total']):.2f}",
            "(info)",
            "",
        ),
        (
            "2. training step while spotrun writes vs no save",
            fmt_s(med(steps["spot"])),
            fmt_s(med(steps["base"])),
            f"{spot_step_ratio:.2f}",
            "<= 1.2",
            yes(spot_step_ratio <= 1.2),
        ),
        (
            "2. training step while DCP writes vs no save",
            fmt_s(med(steps["dcp"])),
            fmt_s(med(steps["base"])),
            f"{dcp_step_ratio:.2f}",
            "(info)",
            "",
        ),
        (
            '3. `save(reason="preemption", wait=True)` vs raw write+fsync',
            fmt_s(med(dur["spot"])),
            fmt_s(med(dur["raw"])),
            f"{dur_ratio:.2f}",
            "<= 1.2",
            yes(dur_ratio <= 1.2),
        ),
        (
            "3. same bytes: raw O_DIRECT write+fsync vs raw buffered",
            "",
            f"{fmt_s(med(dur['raw_direct']))} vs {fmt_s(med(dur['raw']))}",
            f"{paired(dur['raw_direct'], dur['raw']):.2f}",
            "(info)",
            "",
        ),
        (
            "3. SIGTERM to durable / to exit (subprocess) vs raw write in a fresh process",
            f"{fmt_s(med(sig['durable']))} / {fmt_s(med(sig['exit']))}",
            fmt_s(raw_fresh),
            f"{med(sig['durable']) / raw_fresh:.2f} / {med(sig['exit']) / raw_fresh:.2f}",
            "(info)",
            "",
        ),
        (
            "4. `restore()` vs raw read (fresh buffer, page cache warm)",
            fmt_s(med(res["spot"])),
            fmt_s(med(res["raw"])),
            f"{res_ratio:.2f}",
            "<= 1.3",
            yes(res_ratio <= 1.3),
        ),
        (
            "4. `restore()` vs raw read into a reused buffer",
            fmt_s(med(res["spot"])),
            fmt_s(med(res["raw_prealloc"])),
            f"{paired(res['spot'], res['raw_prealloc']):.2f}",
            "(info)",
            "",
        ),
        (
            "5. snapshot buffer (`_buffer.capacity`) vs state",
            fmt_gib(cap),
            fmt_gib(state),
            f"{cap / state:.3f}",
            "<= 1 copy",
            yes(cap <= state * 1.01),
        ),
        (
            "5. RSS kept after first save / peak during it",
            f"{fmt_gib(mem['spotrun_rss_kept'])} / {fmt_gib(mem['spotrun_peak'])}",
            fmt_gib(state),
            f"{mem['spotrun_rss_kept'] / state:.2f} / {mem['spotrun_peak'] / state:.2f}",
            "<= 1 copy",
            yes(mem["spotrun_rss_kept"] <= state * 1.05),
        ),
        (
            "5. DCP stager RSS kept / peak (for comparison)",
            f"{fmt_gib(mem['dcp_rss_kept'])} / {fmt_gib(mem['dcp_peak'])}",
            fmt_gib(state),
            f"{mem['dcp_rss_kept'] / state:.2f} / {mem['dcp_peak'] / state:.2f}",
            "(info)",
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    m = r["machine"]
    details = [
        "",
        f"State: {fmt_gib(state)} ({r['params'] / 1e6:.1f}M float32 parameters + Adam moments); "
        f"checkpoint on disk {fmt_gib(dur['bytes'])}. Medians of {reps} interleaved "
        f"repetitions; a ratio is the median of the per-repetition ratios. Training step: "
        f"batch {BATCH}, fused Adam.",
        f"Machine: {m['cpus']} CPUs, torch threads {m['torch_threads']}, torch {m['torch']}, "
        f"Python {m['python']}, {m['date']}; shared with other builds, so noisy.",
        f"DCP: {r['dcp_config']}."
        + (f" Errors first: {'; '.join(r['dcp_errors'])}" if r["dcp_errors"] else ""),
        f"spotrun background write took {fmt_s(med(steps['spot_write_seconds']))} "
        f"while training (vs {fmt_s(med(st['spot_total']))} idle); DCP's first step waited "
        f"{fmt_s(dcp_wait)} for its staging.",
        f"Step times (s): none {_few(steps['base'])}; spotrun writing {_few(steps['spot'])}; "
        f"DCP writing {_few(steps['dcp'])}.",
        f"Preemption save (s): {_few(dur['spot'])}; raw buffered {_few(dur['raw'])}; "
        f"raw O_DIRECT {_few(dur['raw_direct'])}.",
        f"SIGTERM subprocess ({sigterm_reps} runs, s): signal->durable {_few(sig['durable'])}, "
        f"signal->exit {_few(sig['exit'])}; the final write (+retention) "
        f"{_few(sig['write'])}; interpreter teardown after close "
        f"{_few(sig['interpreter_teardown'])}; raw write+fsync in a fresh process "
        f"{_few(sig['raw_fresh_process'])}.",
        f"Restore (s): {_few(res['spot'])}; raw read {_few(res['raw'])}. Restored Adam moments "
        f"are views of the read buffer: {res['moments_view_read_buffer']}; RSS kept by a "
        f"restore beyond the fresh model+optimizer: "
        f"{fmt_gib(med([float(x) for x in res['rss_kept_after_restore']]))}.",
    ]
    return "\n".join(lines + details)


def _few(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (>=3)")
    parser.add_argument("--sigterm-reps", type=int, default=3, help="SIGTERMed subprocesses")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    parser.add_argument("--sigterm-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sigterm_child:
        sigterm_child(args.sigterm_child)
        return
    if min(args.reps, args.sigterm_reps) < 3:
        parser.error("--reps and --sigterm-reps must be >= 3 (medians of at least 3)")
    for name in [k for k in os.environ if k.startswith("SPOTRUN_")]:
        del os.environ[name]  # local directory only: no S3 upload, no progress file

    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="spotrun-bench-", dir=args.dir))
    root = scratch / "spotrun"
    results: dict[str, Any] = {}
    try:
        model, opt = build()
        trainer = Trainer(model, opt)
        trainer.step()  # creates Adam's moments
        results["params"] = sum(p.numel() for p in model.parameters())
        results["state_bytes"] = state_bytes(model, opt)
        print(f"state: {fmt_gib(results['state_bytes'])}; scratch {scratch}", flush=True)

        ckpt = Checkpointer(root, model=model, optimizer=opt, handle_signals=False)
        ckpt.step()
        mem = measure_memory(ckpt, scratch, model, opt)
        dcp: Dcp = mem.pop("dcp")
        results["memory"] = mem
        results["dcp_config"] = dcp.config
        results["dcp_errors"] = dcp.errors
        print(f"[{time.monotonic() - began:.0f}s] memory done", flush=True)

        results["stall"] = measure_stall(args.reps, ckpt, dcp, model, opt, scratch)
        print(f"[{time.monotonic() - began:.0f}s] stall done", flush=True)
        results["steps"] = measure_steps(args.reps, trainer, ckpt, dcp)
        print(f"[{time.monotonic() - began:.0f}s] steps done", flush=True)
        results["durable"] = measure_durable(args.reps, ckpt, root, scratch)
        print(f"[{time.monotonic() - began:.0f}s] durable done", flush=True)
        ckpt.close()
        expected = ckpt.global_step
        dcp.close()
        del ckpt, dcp, trainer, model, opt
        gc.collect()
        results["restore"] = measure_restore(args.reps, root, expected)
        print(f"[{time.monotonic() - began:.0f}s] restore done", flush=True)
        results["sigterm"] = measure_sigterm(args.sigterm_reps, scratch, delay=0.15)
        print(f"[{time.monotonic() - began:.0f}s] sigterm done", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    results["runtime_s"] = time.monotonic() - began
    print()
    print(report(results, args.reps, args.sigterm_reps))
    print(f"\n(total bench time {results['runtime_s']:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
