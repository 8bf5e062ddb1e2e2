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


class StateError(ValueError):
    """A decoded state that is not shaped like one ``capture`` writes: the checkpoint is invalid."""


_OPTIONAL = ("optimizer", "scheduler", "scaler", "loader", "extras")


def check_state(state: Any, step: int) -> dict[str, Any]:
    """What ``apply`` relies on, checked before anything is loaded (pure): a mapping with the
    model's tensors by name, valid RNG states, a progress record of ``step``, and mappings for
    the optional components. Returns the state; raises StateError (or rng.RngStateError)."""
    if not isinstance(state, dict):
        raise StateError("state.json does not hold a mapping")
    model = state.get("model")
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise StateError("its 'model' entry is not a mapping of parameter names to tensors")
    for name in _OPTIONAL:
        if name in state and not isinstance(state[name], dict):
            raise StateError(f"its {name!r} entry is a {type(state[name]).__name__}, not a mapping")
    progress = state.get("progress")
    if not isinstance(progress, dict) or type(progress.get("step")) is not int:
        raise StateError("its 'progress' entry does not record the step")
    if progress["step"] != step:
        raise StateError(f"it records step {progress['step']}, its manifest step {step}")
    rng.check(state.get("rng"))
    return state


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
            try:
                obj.load_state_dict(state[name])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise CheckpointMismatchError(
                    f"{where}: its {name} state does not load into this run's {name} ({e}); "
                    "restore into the same setup that wrote it, or start fresh with an empty "
                    "checkpoint directory"
                ) from e
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
