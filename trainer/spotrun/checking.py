"""Which check ``spotrun ls / verify / inspect / pull / push`` run on a checkpoint's payload.

Where torch is installed: the full decode (``reader.load_verified``), so these commands accept
exactly what restore accepts. Without torch (``pip install 'spotrun[s3]'`` alone, as in the
sidecar's image): each file's size and CRC32C and the payload's framing
(``integrity.load_framed``, what the sidecar itself restores with), and a note saying what was
left out, so a torch-free machine can still move and verify bytes.
"""

from __future__ import annotations

from .extras import extra_of
from .integrity import load_framed
from .mirror import Check

WITHOUT_TORCH = (
    "torch is not installed: checked each file's size and CRC32C and the payload's framing, "
    "not that it decodes into a state restore can load (`pip install 'spotrun[torch]'` adds "
    "that check)"
)


def strongest() -> tuple[Check, str | None]:
    """The fullest check this install can run, and a note when it is not the full decode."""
    try:
        from .reader import load_verified
    except ModuleNotFoundError as absent:
        if extra_of(absent) != "torch":
            raise
        return load_framed, WITHOUT_TORCH
    return load_verified, None
