"""MANIFEST.json: the commit marker of a checkpoint, written last and read first."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from . import jsonsafe, layout
from .podenv import PodEnv


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="path inside the checkpoint folder")
    size: int = Field(ge=0, description="bytes")
    crc32c: str = Field(pattern=r"^[0-9a-f]{8}$", description="CRC32C of the bytes, hex")


class World(BaseModel):
    """The gang that wrote a checkpoint (absent: a single rank, today's layout)."""

    model_config = ConfigDict(extra="forbid")
    nnodes: int = Field(ge=1, le=layout.MAX_WORLD, description="pods (nodes) of the attempt")
    procs_per_node: int = Field(ge=1, le=layout.MAX_WORLD, description="ranks per pod")
    world_size: int = Field(ge=1, le=layout.MAX_WORLD, description="nnodes * procs_per_node")
    mode: str = Field(
        pattern=r"^(replicated|sharded)$",
        description="replicated: rank 0's top-level payload holds the model and optimizer "
        "(DDP); sharded: each rank's folder holds its shard (FSDP, sharded optimizer)",
    )


class Part(BaseModel):
    """PART-node-NNNNN.json: one node's commit marker inside a gang checkpoint folder."""

    model_config = ConfigDict(extra="forbid")
    format_version: int
    step: int = Field(ge=0)
    node_rank: int = Field(ge=0, lt=layout.MAX_WORLD)
    nnodes: int = Field(ge=1, le=layout.MAX_WORLD)
    files: list[FileEntry] = Field(description="the files this node wrote, paths as in MANIFEST")

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    format_version: int
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    time: AwareDatetime
    metrics: dict[str, float] = Field(default_factory=dict)
    files: list[FileEntry]
    torch_version: str = ""
    python_version: str = ""
    reason: str = Field(default="periodic", description="periodic, preemption, final, emergency")
    writer: str = Field(default="", description="host.pid of the process that wrote it")
    attempt: int | None = Field(default=None, description="SPOTRUN_ATTEMPT of the writer")
    job: str | None = Field(
        default=None, description="<namespace>/<name> of the job that wrote it (SPOTRUN_JOB)"
    )
    world: World | None = Field(
        default=None, description="the gang that wrote it; absent for a single rank"
    )

    @property
    def world_size(self) -> int:
        return 1 if self.world is None else self.world.world_size

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


class ManifestError(ValueError):
    """A MANIFEST.json this reader cannot use."""


class UnknownFormatError(ManifestError):
    """Written by a newer spotrun: refuse rather than guess."""


def new(
    step: int, epoch: int, files: list[FileEntry], metrics: dict[str, float], reason: str
) -> Manifest:
    import torch  # only a writer (which has torch) gets here: the sidecar never does

    env = PodEnv.from_env()
    return Manifest(
        format_version=layout.FORMAT_VERSION,
        step=step,
        epoch=epoch,
        time=datetime.now(timezone.utc),
        metrics=metrics,
        files=files,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        reason=reason,
        writer=f"{platform.node()}.{os.getpid()}",
        attempt=env.attempt,
        job=env.job_key,
    )


def parse(blob: bytes, where: str) -> Manifest:
    """Parse and check a MANIFEST.json; ``where`` names the checkpoint in errors.

    A newer format version raises UnknownFormatError (falling back past a newer checkpoint
    would silently lose progress); anything else unusable raises ManifestError.
    """
    try:
        raw = jsonsafe.loads(blob)
    except jsonsafe.JsonError as e:
        raise ManifestError(f"{where}: MANIFEST.json is {e}") from None
    if not isinstance(raw, dict):
        raise ManifestError(
            f"{where}: MANIFEST.json holds a JSON {type(raw).__name__}, not an object"
        )
    version = raw.get("format_version")
    if type(version) is not int or version < 1:
        raise ManifestError(f"{where}: MANIFEST.json has no valid format_version ({version!r})")
    if version != layout.FORMAT_VERSION:
        raise UnknownFormatError(
            f"{where}: checkpoint format version {version!r}, this spotrun reads version "
            f"{layout.FORMAT_VERSION}; use the spotrun release that wrote it or upgrade"
        )
    try:
        manifest = Manifest.model_validate_json(blob, strict=True)
    except ValidationError as e:
        raise ManifestError(f"{where}: MANIFEST.json is invalid: {_first_errors(e)}") from None
    world = manifest.world
    if world is not None and world.world_size != world.nnodes * world.procs_per_node:
        raise ManifestError(
            f"{where}: MANIFEST.json is invalid: world_size {world.world_size} is not nnodes "
            f"{world.nnodes} x procs_per_node {world.procs_per_node}"
        )
    problem = layout.payload_problem([f.path for f in manifest.files], manifest.world_size)
    if problem is not None:
        raise ManifestError(f"{where}: MANIFEST.json is invalid: {problem}")
    return manifest


def _first_errors(error: ValidationError, limit: int = 3) -> str:
    """A short summary: a hostile manifest can carry thousands of errors."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
        for e in error.errors()[:limit]
    ]
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
