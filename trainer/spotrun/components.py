"""The things a checkpoint holds, and putting them back.

Keys written (documented in the README):
  model       model.state_dict()
  optimizer   optimizer.state_dict()                (if given)
  scheduler   lr_scheduler.state_dict()             (if given)
  scaler      amp GradScaler.state_dict()           (if given)
  loader      ResumableLoader.state_dict(): epoch, batches taken, seed (if given)
  extras      {name: obj.state_dict() or the plain value}
  rng         python, numpy, torch CPU and every CUDA generator
  progress    {"step": global step, "epoch": epoch}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from . import rng


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any, /) -> Any: ...


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another model or setup."""


@dataclass
class Components:
    model: torch.nn.Module
    optimizer: Stateful | None = None
    scheduler: Stateful | None = None
    scaler: Stateful | None = None
    loader: Stateful | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def named(self) -> dict[str, Stateful]:
        found = {
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "loader": self.loader,
        }
        return {k: v for k, v in found.items() if v is not None}

    def capture(self, boundary: Mapping[str, Any], step: int, epoch: int) -> dict[str, Any]:
        """The whole state; ``boundary`` holds what was captured at the last step boundary."""
        state: dict[str, Any] = {"model": self.model.state_dict()}
        for name, obj in self.named().items():
            state[name] = boundary[name] if name in boundary else obj.state_dict()
        state["extras"] = {
            k: v.state_dict() if isinstance(v, Stateful) else v for k, v in self.extras.items()
        }
        state["rng"] = boundary["rng"]
        state["progress"] = {"step": step, "epoch": epoch}
        return state

    def apply(self, state: Mapping[str, Any], where: str) -> None:
        """Load everything back; refuse (naming the differences) a checkpoint of another model."""
        check_model(self.model.state_dict(), state["model"], where)
        self.model.load_state_dict(state["model"])
        for name, obj in self.named().items():
            if name not in state:
                raise CheckpointMismatchError(
                    f"{where} holds no {name} state but this run has a {name}; "
                    "restore into the same setup that wrote it"
                )
            obj.load_state_dict(state[name])
        for key, saved in state.get("extras", {}).items():
            current = self.extras.get(key)
            if isinstance(current, Stateful):
                current.load_state_dict(saved)
            else:
                self.extras[key] = saved
        rng.restore(state["rng"])


def check_model(expected: Mapping[str, torch.Tensor], saved: Mapping[str, Any], where: str) -> None:
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(saved)
        if isinstance(saved[k], torch.Tensor) and saved[k].shape != expected[k].shape
    )
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_few(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches {_few(shapes)}")
    raise CheckpointMismatchError(
        f"{where} was written for another model: {'; '.join(parts)}. Point the run at the "
        "checkpoint directory of this model, or start fresh with an empty one"
    )


def _few(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"
