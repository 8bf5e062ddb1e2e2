"""The things a checkpoint holds, captured at a step boundary, and putting them back.

Keys written (documented in the README):
  model       model.state_dict()
  optimizer   optimizer.state_dict()                (if given)
  scheduler   lr_scheduler.state_dict()             (if given)
  scaler      amp GradScaler.state_dict()           (if given)
  loader      ResumableLoader.state_dict(): epoch, batches taken, seed (if given)
  extras      {name: obj.state_dict() or the plain value}
  state       ckpt.state, the same way
  ranges      the positions of ckpt.range / ckpt.iterate loops (``positions``)
  rng         python, numpy, torch CPU and every CUDA generator
  progress    {"step": global step, "epoch": epoch}

Everything but the model's tensors and a torch optimizer's per-parameter state is copied at
each ``ckpt.step()`` (``Components.boundary``): small, and changed by code that runs between
steps (``sched.step()``, evaluation, the script's own variables). The big tensors only change
in a parameter update, which the Checkpointer watches; the boundary also notes every tensor's
version counter, so an in-place change after the step is seen (``Boundary.changed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from . import rng
from .positions import Positions
from .positions import check as check_positions
from .scriptstate import ScriptState, Stateful, freeze, freeze_entry, load_values

__all__ = ["Boundary", "CheckpointMismatchError", "Components", "StateError", "Stateful"]


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another model or setup."""


class StateError(ValueError):
    """A decoded state that is not shaped like one ``capture`` writes: the checkpoint is invalid."""


_OPTIONAL = ("optimizer", "scheduler", "scaler", "loader", "extras", "state", "ranges")


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
    try:
        check_positions(state.get("ranges", {}))
    except ValueError as e:
        raise StateError(f"its loop positions are malformed: {e}") from None
    return state


@dataclass(frozen=True)
class Boundary:
    """The state at one step boundary: ``small`` copied, ``watched`` tensors by reference with
    their version counters then."""

    small: dict[str, Any]
    watched: list[tuple[str, torch.Tensor, int]]

    def changed(self) -> str | None:
        """The first watched tensor changed in place since the boundary, or None."""
        return next((name for name, t, version in self.watched if t._version != version), None)


@dataclass
class Components:
    model: torch.nn.Module
    optimizer: Stateful | None = None
    scheduler: Stateful | None = None
    scaler: Stateful | None = None
    loader: Stateful | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    state: ScriptState = field(default_factory=ScriptState)
    positions: Positions = field(default_factory=Positions)
    _model_tensors: list[tuple[str, torch.Tensor]] = field(
        default_factory=list, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.track_model()

    def track_model(self) -> None:
        """(Re)list the model's tensors whose versions each boundary notes."""
        tensors = self.model.state_dict(keep_vars=True)
        self._model_tensors = [(f"model.{k}", t) for k, t in tensors.items()]

    def named(self) -> dict[str, Stateful]:
        found = {
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "loader": self.loader,
        }
        return {k: v for k, v in found.items() if v is not None}

    def boundary(self) -> Boundary:
        """Copy the small state now (raises UnsupportedStateError naming a value that a
        checkpoint cannot hold); note the version of every tensor left by reference."""
        tensors: list[tuple[str, torch.Tensor]] = []
        small: dict[str, Any] = {"rng": rng.capture()}
        for name, obj in self.named().items():
            if isinstance(obj, torch.optim.Optimizer):  # its state changes only in step()
                groups = [{k: v for k, v in g.items() if k != "params"} for g in obj.param_groups]
                small["optimizer_groups"] = freeze(groups, "optimizer.param_groups", tensors)
            else:
                small[name] = freeze(obj.state_dict(), f"{name}.state_dict()", tensors)
        small["extras"] = {
            k: freeze_entry(v, f"extras[{k!r}]", tensors) for k, v in self.extras.items()
        }
        small["state"] = {
            k: freeze_entry(v, f"ckpt.state.{k}", tensors) for k, v in self.state.items()
        }
        small["ranges"] = self.positions.snapshot(bool(getattr(self.loader, "iterating", False)))
        watched = [(n, t, t._version) for n, t in [*self._model_tensors, *tensors]]
        return Boundary(small, watched)

    def capture(self, boundary: Boundary, step: int, epoch: int) -> dict[str, Any]:
        """The whole state of ``boundary``: its small state, and the model and optimizer
        tensors as they are now (the caller checked that they did not change since)."""
        small = boundary.small
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if "optimizer_groups" in small and self.optimizer is not None:
            live = self.optimizer.state_dict()
            for group, saved in zip(live["param_groups"], small["optimizer_groups"], strict=True):
                group.update(saved)  # the learning rates of the boundary, not a later sched
            state["optimizer"] = live
        for name in ("optimizer", "scheduler", "scaler", "loader"):
            if name in small:
                state[name] = small[name]
        for name in ("extras", "state", "ranges", "rng"):
            state[name] = small[name]
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
                raise _mismatch(where, f"its {name} state", f"this run's {name} ({e})") from e
        for name, target in (("extras", self.extras), ("state", self.state)):
            failed = load_values(target, state.get(name, {}))
            if failed:
                raise _mismatch(where, f"its {name} {', '.join(failed)}", "this run's objects")
        self.positions.load(state.get("ranges", {}))
        rng.restore(state["rng"])
        self.track_model()


def _mismatch(where: str, what: str, into: str) -> CheckpointMismatchError:
    return CheckpointMismatchError(
        f"{where}: {what} does not load into {into}; restore into the same setup that wrote it, "
        "or start fresh with an empty checkpoint directory"
    )


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
