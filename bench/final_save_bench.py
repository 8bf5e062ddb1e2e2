"""Final-save benchmark: today's full upload vs the delta upload (issue 15, build 2).

    flock /tmp/spotrun-tests.lock .venv/bin/python bench/final_save_bench.py \\
        [--gib 1 4 10] [--changed 0.05] [--reps 3] [--link-mbps 100] [--xfs-gib 48]

Starts a private versitygw (hack/) on loopback. For each size: writes a payload file of that
size, uploads it as the previous periodic checkpoint (durable in S3, its part digests known
to the store as after a sidecar's periodic upload), rewrites ``--changed`` of its parts
spread evenly (a frozen backbone with trainable parts), drops the file from the page cache
(the trainer writes with O_DIRECT), then times, side by side and alternating, ``--reps``
times: the full upload (``SPOTRUN_S3_DELTA=0``, what the sidecar did before) and the delta
upload of that final checkpoint. Each final object is deleted after its run and the previous
one at the end (disk: the server holds the previous object, the parts of the upload running
and its completed copy: about 4x the size at the peak, with the local file). Before each run
the page cache of the local file and of the server's previous object is dropped. The previous
checkpoint's upload (set-up, not timed) goes to the server directly, not through the link.

``--xfs-gib N`` runs the server and the local file on an XFS filesystem with reflinks (an
N GiB sparse image, loop-mounted; root and ``mkfs.xfs`` from Debian's xfsprogs needed), as a
versitygw posix deployment on XFS or btrfs would: completing a multipart upload then clones
its parts into the object (``copy_file_range``) instead of copying them, and the local file
is made a clone of the server's previous object before its parts are rewritten. The peak is
then about 2x the size: 20 GiB fits in ~42 GiB free.

Prints one line per size: median seconds of each, the ratio, what the delta sent, the load
average; the figures go to bench/FINAL_SAVE_RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from localcluster import s3server  # noqa: E402
from spotrun import layout  # noqa: E402
from spotrun.s3store import S3Store, TransferSettings  # noqa: E402

GIB = 2**30
BLOCK = 64 * 2**20  # the random block the file is tiled from (written, not held, per size)
PATH = layout.TENSORS
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


class Link:
    """The node's uplink to S3: every byte the client sends, over all connections, at
    ``rate`` bytes/s (answers come back unlimited)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._free_at = time.monotonic()

    def take(self, nbytes: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._free_at = max(now, self._free_at) + nbytes / self.rate
            done = self._free_at
        time.sleep(max(0.0, done - now))


def serve_link(target_port: int, link: Link) -> int:
    """A TCP forwarder on loopback to ``target_port`` whose upstream bytes go through
    ``link``; returns its port (daemon threads: it ends with the bench)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(src: socket.socket, dst: socket.socket, limit: Link | None) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(256 * 1024):
                if limit:
                    limit.take(len(data))
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # the other way runs on until its side closes

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pipe, args=(client, server, link), daemon=True).start()
            threading.Thread(target=pipe, args=(server, client, None), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def changed_parts(parts: int, fraction: float) -> list[int]:
    """Which parts a fine-tune rewrites: ``fraction`` of them (at least one), spread evenly."""
    count = max(1, round(parts * fraction)) if fraction > 0 else 0
    return sorted({int(i * parts / count) for i in range(count)}) if count else []


def write_file(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 256, BLOCK, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        written = 0
        while written < size:
            chunk = block[: min(BLOCK, size - written)]
            # each chunk differs from the others (its offset stamped in), like real tensors
            f.write(written.to_bytes(8, "little") + chunk[8:])
            written += len(chunk)
        f.flush()
        os.fsync(f.fileno())


def rewrite(path: Path, parts: list[int], part_size: int, seed: int) -> int:
    """Overwrite whole parts with new bytes; returns the bytes changed."""
    rng = np.random.default_rng(seed)
    changed = 0
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        for index in parts:
            start = index * part_size
            length = min(part_size, size - start)
            os.pwrite(f.fileno(), rng.integers(0, 256, length, dtype=np.uint8).tobytes(), start)
            changed += length
        os.fsync(f.fileno())
    return changed


def drop_cache(*paths: Path) -> None:
    for path in paths:
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def clone_from(path: Path, source: Path) -> bool:
    """Replace ``path`` by a reflink clone of ``source`` (same bytes, shared blocks); False
    where the filesystem cannot clone (``path`` is then left as it was)."""
    staged = path.with_suffix(".clone")
    with open(source, "rb") as src, open(staged, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        except OSError:
            cloned = False
        else:
            cloned = True
    if cloned:
        os.replace(staged, path)
    else:
        staged.unlink()
    return cloned


def need_free(folder: Path, size: int, times: float) -> None:
    free = shutil.disk_usage(folder).free
    if free < size * times:
        sys.exit(
            f"final_save_bench: {size / GIB:.1f} GiB of state needs about {size * times / GIB:.0f}"
            f" GiB free in {folder}, {free / GIB:.0f} GiB are: pass a smaller --gib, or"
            " --xfs-gib on a disk with room"
        )


@contextlib.contextmanager
def xfs_mount(image: Path, gib: float) -> Iterator[Path]:
    """An XFS filesystem with reflinks in a sparse ``gib`` GiB image, loop-mounted beside it;
    unmounted and deleted at the end."""
    if shutil.which("mkfs.xfs") is None or os.geteuid() != 0:
        sys.exit("final_save_bench: --xfs-gib needs root and mkfs.xfs (apt-get install xfsprogs)")
    mount = image.with_suffix(".mnt")
    with open(image, "wb") as f:
        f.truncate(int(gib * GIB))
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()
        image.unlink()


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(seconds, the 1-minute load average right after)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, os.getloadavg()[0]


def one_size(
    bucket: str, endpoints: tuple[str, str], work: Path, gib: float, fraction: float, reps: int
) -> None:
    """``endpoints``: the server's own (to set up: the previous checkpoint's upload, not timed)
    and the one the timed uploads go through (the link, if limited)."""
    size = int(gib * GIB)
    source = work / "tensors.safetensors"
    write_file(source, size, seed=1)
    setup = S3Store(bucket, "bench", endpoints[0], TransferSettings(delta=True))
    delta = S3Store(bucket, "bench", endpoints[1], TransferSettings(delta=True))
    full = S3Store(bucket, "bench", endpoints[1], TransferSettings(delta=False))
    part = delta.settings.part_size
    parts = -(-size // part)
    previous = layout.step_dirname(1)
    setup.upload_file(previous, PATH, source)
    record = setup.parts.get(PATH)
    assert record is not None, "the previous upload left no part digests"
    stored = work / "s3state" / "s3" / "data" / bucket / setup.key(previous, PATH)
    cloned = clone_from(source, stored)
    changed = rewrite(source, changed_parts(parts, fraction), part, seed=2)
    times: dict[str, list[float]] = {"full": [], "delta": []}
    loads: list[float] = []
    sent: list[int] = []
    for rep in range(reps):
        for way in ("full", "delta") if rep % 2 == 0 else ("delta", "full"):
            store = delta if way == "delta" else full
            name = layout.step_dirname(100 + rep * 2 + (way == "delta"))
            delta.parts.remember(PATH, record)  # the previous periodic upload, as the sidecar
            before = store.sent_bytes
            drop_cache(source, stored)
            seconds, load = timed(lambda s=store, n=name: s.upload_file(n, PATH, source))
            times[way].append(seconds)
            loads.append(load)
            if way == "delta":
                sent.append(store.sent_bytes - before)
            store.delete(name)
    setup.delete(previous)
    source.unlink()
    f, d = statistics.median(times["full"]), statistics.median(times["delta"])
    print(
        f"{size / GIB:6.2f} GiB  changed {changed / size:6.1%}"
        f" ({len(changed_parts(parts, fraction))}"
        f"/{parts} parts)  full {f:7.1f} s ({size / f / 1e6:5.0f} MB/s)  delta {d:6.1f} s"
        f"  full/delta {f / d:5.1f}x  delta sent {statistics.median(sent) / 2**20:7.0f} MiB"
        f"  runs full {[round(t, 1) for t in times['full']]} delta"
        f" {[round(t, 1) for t in times['delta']]}  load {min(loads):.1f}-{max(loads):.1f}"
        f"{'  (local file a clone of the previous object)' if cloned else ''}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, nargs="+", default=[1.0, 4.0, 10.0])
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--link-mbps", type=float, default=0, help="limit the client's uplink (MB/s; 0: none)"
    )
    parser.add_argument(
        "--xfs-gib",
        type=float,
        default=0,
        help="run on a loop-mounted XFS with reflinks of this size (GiB; 0: the temp folder)",
    )
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="spotrun-finalsave-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, top, True)
        work = (
            stack.enter_context(xfs_mount(top / "xfs.img", args.xfs_gib)) if args.xfs_gib else top
        )
        need_free(work, int(max(args.gib) * GIB), 2.1 if args.xfs_gib else 4.1)
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    info = s3server.start(work / "s3state")
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    os.environ |= dict(zip(keys, (info.access_key, info.secret_key, info.region), strict=True))
    endpoint = info.endpoint
    if args.link_mbps:
        endpoint = f"http://127.0.0.1:{serve_link(info.port, Link(args.link_mbps * 1e6))}"
    settings = TransferSettings()
    link = f"uplink limited to {args.link_mbps:.0f} MB/s" if args.link_mbps else "no link limit"
    print(
        f"loopback versitygw, {link}, part {settings.part_size >> 20} MiB"
        f" x {settings.concurrency}, "
        f"median of {args.reps}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f},"
        f" {'XFS with reflinks' if args.xfs_gib else 'the temp folder'}",
        flush=True,
    )
    try:
        for gib in args.gib:
            one_size(info.bucket, (info.endpoint, endpoint), work, gib, args.changed, args.reps)
    finally:
        s3server.stop(work / "s3state")


if __name__ == "__main__":
    main()
