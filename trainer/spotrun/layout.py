"""The checkpoint layout shared by the trainer, the sidecar and the operator.

``<root>/checkpoints/step-000000001200/`` holds one checkpoint; ``MANIFEST.json`` inside it
is the commit marker. The same names are used on local disk and in S3 (as key prefixes).
Pure functions only: no I/O here.
"""

from __future__ import annotations

import re

CHECKPOINTS = "checkpoints"
MANIFEST = "MANIFEST.json"
TENSORS = "tensors.safetensors"
STRUCTURE = "state.json"
FORMAT_VERSION = 1
TMP_PREFIX = ".tmp-"
# The files of a checkpoint are named by the format, never by its manifest: a manifest that
# names anything else (a path, "..", an absolute path, a duplicate) makes the checkpoint invalid.
PAYLOAD = (TENSORS, STRUCTURE)
MANIFEST_LIMIT = 1024 * 1024  # bytes; a manifest is a few KiB, a larger one is refused unread

_STEP_DIR = re.compile(r"step-([0-9]{12})")  # [0-9], not \d: \d matches Unicode digits too


def step_dirname(step: int) -> str:
    """``step-000000001200`` for step 1200."""
    if step < 0:
        raise ValueError(f"a checkpoint step must be >= 0, got {step}")
    return f"step-{step:012d}"


def parse_step_dirname(name: str) -> int | None:
    """The step a checkpoint folder name stands for, or None for anything else."""
    match = _STEP_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def payload_problem(paths: list[str]) -> str | None:
    """Why a manifest's file list is not the format's (pure); None when it is exactly
    ``PAYLOAD``, each name once."""
    for path in paths:
        if path not in PAYLOAD:
            return (
                f"it names the file {path!r}, which is not part of the checkpoint format (only "
                f"{', '.join(PAYLOAD)}); such a checkpoint is never read nor written"
            )
    for name in PAYLOAD:
        if paths.count(name) != 1:
            return f"it lists {name} {paths.count(name)} times instead of once"
    return None


def tmp_dirname(step: int, token: str) -> str:
    """A folder a writer fills before renaming it into place; never read as a checkpoint."""
    return f"{TMP_PREFIX}{step_dirname(step)}-{token}"


def newest_first(names: list[str]) -> list[tuple[int, str]]:
    """Checkpoint folder names (others ignored) as (step, name), newest first."""
    found = [(step, n) for n in names if (step := parse_step_dirname(n)) is not None]
    return sorted(found, reverse=True)
