"""What ``spotrun ls / verify / inspect`` report about the checkpoints in a store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from . import layout, tensorheader
from .integrity import CorruptCheckpointError, read_manifest
from .manifest import Manifest, ManifestError
from .mirror import Check
from .store import Store


@dataclass(frozen=True)
class Row:
    name: str
    step: int | None
    manifest: Manifest | None
    problem: str | None  # None when the checkpoint verifies

    @property
    def valid(self) -> bool:
        return self.problem is None


def scan(store: Store, check: Check | None) -> list[Row]:
    """Every folder under checkpoints/, newest first; ``check`` reads and checks payloads
    (``checking.strongest``), None reads manifests only."""
    rows = []
    names = store.names()
    newest = layout.newest_first(names)
    committed = {name for _, name in newest}
    for _, name in newest:
        rows.append(_row(store, name, check))
    for name in sorted(set(names) - committed):
        why = (
            "being written (or left by a killed writer)"
            if name.startswith(layout.TMP_PREFIX)
            else "not a checkpoint folder"
        )
        rows.append(Row(name, None, None, why))
    return rows


def _row(store: Store, name: str, check: Check | None) -> Row:
    step = layout.parse_step_dirname(name)
    try:
        manifest = check(store, name).manifest if check else read_manifest(store, name)
    except (ManifestError, CorruptCheckpointError) as e:
        return Row(name, step, None, str(e))
    return Row(name, step, manifest, None)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_age(then: datetime, now: datetime | None = None) -> str:
    seconds = int(((now or datetime.now(timezone.utc)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def format_rows(rows: list[Row]) -> list[str]:
    lines = [f"{'STEP':>12}  {'EPOCH':>5}  {'SIZE':>10}  {'AGE':>5}  {'REASON':<10}  STATUS"]
    for r in rows:
        if r.manifest is not None:
            m = r.manifest
            lines.append(
                f"{m.step:>12}  {m.epoch:>5}  {human_size(m.total_size):>10}  "
                f"{human_age(m.time):>5}  {m.reason:<10}  valid"
            )
        else:
            step = "-" if r.step is None else str(r.step)
            lines.append(f"{step:>12}  {'-':>5}  {'-':>10}  {'-':>5}  {'-':<10}  {r.problem}")
    return lines


def describe(store: Store, name: str, check: Check) -> list[str]:
    """Manifest fields and every tensor's key, dtype and shape (from the tensor file's header:
    no torch needed)."""
    loaded = check(store, name)
    m = loaded.manifest
    lines = [
        f"checkpoint  {store.file_uri(name)}",
        f"step        {m.step}",
        f"epoch       {m.epoch}",
        f"time        {m.time.isoformat()}",
        f"reason      {m.reason}",
        f"metrics     {', '.join(f'{k}={v:g}' for k, v in sorted(m.metrics.items())) or '-'}",
        f"written by  torch {m.torch_version}, python {m.python_version}",
        f"files       {', '.join(f'{f.path} ({human_size(f.size)})' for f in m.files)}",
        "tensors:",
    ]
    try:
        entries = tensorheader.parse(loaded.files[layout.TENSORS]).entries
    except tensorheader.TensorFileError as e:
        raise CorruptCheckpointError(f"{loaded.name}: {e}") from None
    for t in sorted(entries, key=lambda entry: entry.key):
        lines.append(f"  {t.key:<60} {t.dtype:<5} {list(t.shape)}")
    return lines

