"""The whole-checkpoint comparison behind ``spotrun chaos`` (pure: decoded states in, findings out).

Two decoded checkpoint states (``reader.decode_state``: nested dicts, lists, tuples, tensors,
numpy arrays and scalars) are walked side by side, so every key, including keys added to the
checkpoint format later, is compared without being named here. Each difference carries its
path (``scheduler.last_epoch``, ``optimizer.param_groups[0].lr``, ``model.fc.weight``) and a
detail (``3 vs 4``, ``max abs diff 1e-03 (12 of 640 values)``, ``only in the interrupted
run``); ``explain`` groups them by what they belong to and attaches a hint at the likely cause,
causes first (RNG, data position, schedule), consequences (weights, optimizer moments) last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

REFERENCE, INTERRUPTED = "reference", "interrupted"
MANIFEST_FIELDS = ("epoch", "metrics")  # compared besides state.json; time, writer etc. differ


@dataclass(frozen=True)
class Difference:
    path: str
    detail: str


@dataclass(frozen=True)
class Finding:
    """Differences under one part of the checkpoint, with a hint at their cause."""

    topic: str
    hint: str
    differences: tuple[Difference, ...]


# (path prefix, hint), most specific first; the order of the table is the order of the report
HINTS: tuple[tuple[str, str], ...] = (
    (
        "rng.python",
        "Python's RNG (random) differs: the script draws from `random` without "
        "seeding it, or draws from it outside the checkpoint (e.g. before restore() or only when "
        "it resumes)",
    ),
    (
        "rng.numpy",
        "numpy's RNG differs: the script uses numpy's RNG without seeding it, or "
        "draws from it outside the checkpoint (e.g. before restore() or only when it resumes)",
    ),
    (
        "rng.torch",
        "torch's CPU RNG differs: the script draws from torch's RNG without seeding "
        "it (torch.manual_seed), or outside the checkpoint (e.g. after restore() on resume only)",
    ),
    (
        "rng.cuda",
        "a CUDA RNG differs: the script draws on the GPU without seeding it, or the "
        "runs saw different numbers of CUDA devices",
    ),
    (
        "rng",
        "a random generator's state differs: the script draws from it unseeded or "
        "outside the checkpoint",
    ),
    (
        "progress",
        "the runs ended at different steps or epochs: the number of steps depends on "
        "state outside the checkpoint (a loop bound, early stopping on an unsaved value), or the "
        "script does not continue where it stopped",
    ),
    (
        "manifest.epoch",
        "the runs ended in different epochs: the script's epoch count does not "
        "come from the checkpoint",
    ),
    ("loader", "the data position differs: the resumed run continued at another batch or epoch"),
    (
        "ranges",
        "a hand-written loop's position (ckpt.range / ckpt.iterate) differs: the resumed run "
        "continued at another item (the loop's bounds or items differ between runs?)",
    ),
    (
        "scheduler",
        "the LR scheduler's state differs: scheduler.step() ran a different number "
        "of times around an interruption (e.g. at an epoch end), or the scheduler was built "
        "differently on resume",
    ),
    (
        "optimizer.param_groups",
        "the optimizer's settings (e.g. the learning rate) differ: the "
        "script sets them from a value outside the checkpoint (e.g. an LR annealed in a local "
        "variable); keep that value in the checkpoint",
    ),
    (
        "state",
        "the script's own state (ckpt.state) differs: something it is computed from lives "
        "outside the checkpoint (a local variable, an unseeded or unsaved generator)",
    ),
    (
        "extras",
        "the script's own state differs: it lives in a variable outside the checkpoint, "
        "or is not read back from the checkpointed object after restore() (ckpt.state keeps "
        "such values where the script reads them)",
    ),
    (
        "scaler",
        "the AMP grad scaler's state differs: it follows the overflow history; look at "
        "the differences above, or at a step skipped on resume",
    ),
    (
        "manifest.metrics",
        "a recorded metric differs: it follows from the training state; look "
        "at the differences above",
    ),
    (
        "optimizer",
        "the optimizer's state differs: it follows the weights and gradients; look "
        "at the differences above",
    ),
    (
        "model",
        "the weights differ (training diverged): the cause is the first difference above, "
        "or state the script keeps outside the checkpoint (a counter, an RNG object, a hidden "
        "state carried across batches)",
    ),
)
OTHER_HINT = (
    "this value is restored from the checkpoint yet differs: something outside the checkpoint "
    "feeds it (a variable the script keeps, a generator it does not restore)"
)
_ORDER = {prefix: i for i, (prefix, _) in enumerate(HINTS)}
_OTHER_RANK = _ORDER["extras"] + 0.5  # state added to the format later: among the script's


def compare(reference: Any, interrupted: Any, path: str = "") -> list[Difference]:
    """Every difference between two decoded states, by path (empty when identical)."""
    if isinstance(reference, Mapping) and isinstance(interrupted, Mapping):
        return _mappings(reference, interrupted, path)
    if isinstance(reference, torch.Tensor | np.ndarray) and isinstance(
        interrupted, torch.Tensor | np.ndarray
    ):
        detail = _arrays(_as_tensor(reference), _as_tensor(interrupted))
        return [Difference(path, detail)] if detail else []
    if _is_scalar(reference) and _is_scalar(interrupted):
        return _plain(reference, interrupted, path)
    if _kind(reference) != _kind(interrupted):
        return [Difference(path, f"{_kind(reference)} vs {_kind(interrupted)}")]
    if isinstance(reference, list | tuple):
        return _sequences(reference, interrupted, path)
    return _plain(reference, interrupted, path)


def _plain(reference: Any, interrupted: Any, path: str) -> list[Difference]:
    same = _same_scalar(reference, interrupted)
    return [] if same else [Difference(path, _versus(reference, interrupted))]


def _mappings(
    reference: Mapping[Any, Any], interrupted: Mapping[Any, Any], path: str
) -> list[Difference]:
    out: list[Difference] = []
    for key in sorted(reference.keys() | interrupted.keys(), key=lambda k: (str(type(k)), str(k))):
        where = _child(path, key)
        if key not in interrupted:
            out.append(Difference(where, f"only in the {REFERENCE} run"))
        elif key not in reference:
            out.append(Difference(where, f"only in the {INTERRUPTED} run"))
        else:
            out.extend(compare(reference[key], interrupted[key], where))
    return out


def _sequences(
    reference: list[Any] | tuple[Any, ...], interrupted: Any, path: str
) -> list[Difference]:
    if all(_is_scalar(v) for v in (*reference, *interrupted)):
        detail = _scalars(list(reference), list(interrupted))
        return [Difference(path, detail)] if detail else []
    out = []
    if len(reference) != len(interrupted):
        out.append(Difference(path, f"length {len(reference)} vs {len(interrupted)}"))
    for i, (a, b) in enumerate(zip(reference, interrupted, strict=False)):
        out.extend(compare(a, b, f"{path}[{i}]"))
    return out


def _scalars(reference: list[Any], interrupted: list[Any]) -> str | None:
    """One line for a sequence of plain values (an RNG's 625 words are one finding, not 625)."""
    if len(reference) != len(interrupted):
        return f"length {len(reference)} vs {len(interrupted)}"
    differ = [
        i
        for i, (a, b) in enumerate(zip(reference, interrupted, strict=True))
        if not _same_scalar(a, b)
    ]
    if not differ:
        return None
    first = differ[0]
    where = f"[{first}]: {_versus(reference[first], interrupted[first])}"
    if len(differ) == 1:
        return where
    return f"{len(differ)} of {len(reference)} values differ (first at {where})"


def _arrays(a: torch.Tensor, b: torch.Tensor) -> str | None:
    """None when dtype, shape and every bit agree; else what differs and by how much."""
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} vs {b.dtype}"
    if a.shape != b.shape:
        return f"shape {list(a.shape)} vs {list(b.shape)}"
    if _bits(a) == _bits(b):
        return None
    if not (a.is_floating_point() or a.is_complex()):  # counts, RNG words, flags: which ones
        unequal = (a != b).reshape(-1)
        first = int(unequal.nonzero()[0, 0])
        where = (
            f"first at [{first}]: {a.reshape(-1)[first].item()} vs {b.reshape(-1)[first].item()}"
        )
        return f"{int(unequal.sum())} of {unequal.numel()} values differ ({where})"
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    wide_a, wide_b = a.to(torch.float64), b.to(torch.float64)
    unequal = (wide_a != wide_b) & ~(wide_a.isnan() & wide_b.isnan())
    count, total = int(unequal.sum()), unequal.numel()
    if count == 0:
        return "the same values with other bits (e.g. -0.0 vs 0.0, or NaN payloads)"
    gap = (wide_a[unequal] - wide_b[unequal]).abs().nan_to_num(nan=math.inf).max()
    return f"max abs diff {float(gap):.3g} ({count} of {total} values differ)"


def _bits(t: torch.Tensor) -> bytes:
    return bytes(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if value.dtype in (np.uint16, np.uint32, np.uint64):  # torch lacks full support: widen
        return torch.from_numpy(value.astype(np.float64 if value.dtype == np.uint64 else np.int64))
    return torch.from_numpy(np.ascontiguousarray(value))


def _same_scalar(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str | bytes)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, torch.Tensor | np.ndarray):
        return "a tensor"
    return type(value).__name__


def _versus(a: Any, b: Any) -> str:
    if type(a) is not type(b):
        return f"{_short(a)} ({type(a).__name__}) vs {_short(b)} ({type(b).__name__})"
    return f"{_short(a)} vs {_short(b)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _child(path: str, key: Any) -> str:
    if isinstance(key, str):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def topic_of(path: str) -> str:
    """The HINTS prefix a path belongs to (``rng.numpy.state.key`` -> ``rng.numpy``), or its
    first segment for parts of the checkpoint the table does not name."""
    for prefix, _ in HINTS:
        if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[")):
            return prefix
    return path.split(".", 1)[0].split("[", 1)[0]


def explain(differences: list[Difference]) -> list[Finding]:
    """The differences grouped by topic, causes first, each group with its hint."""
    groups: dict[str, list[Difference]] = {}
    for difference in differences:
        groups.setdefault(topic_of(difference.path), []).append(difference)
    hints = dict(HINTS)
    ordered = sorted(groups, key=lambda topic: _ORDER.get(topic, _OTHER_RANK))
    return [Finding(t, hints.get(t, OTHER_HINT), tuple(groups[t])) for t in ordered]


def format_findings(findings: list[Finding], per_topic: int = 6) -> list[str]:
    lines: list[str] = []
    for finding in findings:
        shown = finding.differences[:per_topic]
        lines.extend(f"  {d.path}: {d.detail}" for d in shown)
        if len(finding.differences) > len(shown):
            lines.append(
                f"  ... and {len(finding.differences) - len(shown)} more under {finding.topic}"
            )
        lines.append(f"    hint: {finding.hint}")
    return lines
