"""What `make demo` saw, and what it makes of it: the trainer's log lines parsed, the summary
(steps lost and time to resume per preemption, spot vs on-demand cost) and the picture.

Pure functions over plain records; only ``draw`` touches the file system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_STEP = re.compile(r"\bstep (\d+): loss ([0-9.eE+-]+|nan|inf)")
_RESTORED = re.compile(r"spotrun: restored step (\d+)")
_SAVING = re.compile(r"spotrun: \S+ received, saving step (\d+) before exiting")
_DURABLE = re.compile(r"spotrun: (?:step (\d+) is durable|durable step is (\d+)); exiting 0")
_EPOCH = re.compile(r"\bepoch (\d+): step (\d+), test accuracy")

# What a GPU node costs per hour when the job names no prices (AWS g5.xlarge, us-east-1,
# late 2026: on-demand list price and a typical spot price).
DEFAULT_ON_DEMAND_HOURLY = 1.006
DEFAULT_SPOT_HOURLY = 0.36


@dataclass
class Attempt:
    """One pod of the job, as the demo watched it (times in seconds since the demo started)."""

    number: int
    pod: str
    node: str = ""
    capacity: str = "spot"
    started: float | None = None  # first seen Running
    ended: float | None = None  # gone, or its trainer finished
    restored_step: int | None = None
    restored_at: float | None = None
    last_step: int = 0
    final_save: int | None = None  # the step it saved on SIGTERM
    durable_at_exit: bool = False
    exited_at: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    steps_per_epoch: int | None = None

    def feed(self, line: str, now: float) -> None:
        """Take one line of the trainer's log, received at ``now``."""
        if m := _STEP.search(line):
            step = int(m.group(1))
            self.last_step = max(self.last_step, step)
            self.losses.append((step, float(m.group(2))))
        elif m := _RESTORED.search(line):
            self.restored_step = int(m.group(1))
            self.restored_at = now
            self.last_step = max(self.last_step, self.restored_step)
        elif m := _SAVING.search(line):
            self.final_save = int(m.group(1))
            self.last_step = max(self.last_step, self.final_save)
        elif m := _DURABLE.search(line):
            self.durable_at_exit = True
            self.exited_at = now
        elif (m := _EPOCH.search(line)) and self.steps_per_epoch is None and m.group(1) == "0":
            self.steps_per_epoch = int(m.group(2))


@dataclass
class Preemption:
    """A spot node the demo took away while an attempt ran on it."""

    at: float
    node: str
    attempt: int
    step: int  # the trainer's step when the notice came


@dataclass
class Outcome:
    phase: str
    spot_seconds: float
    on_demand_seconds: float
    spot_hourly: float | None = None
    on_demand_hourly: float | None = None


@dataclass
class PreemptionLoss:
    preemption: Preemption
    saved_step: int | None
    restored_step: int | None
    steps_lost: int | None
    resume_seconds: float | None  # trainer exited → next attempt restored


def losses(attempts: list[Attempt], preemptions: list[Preemption]) -> list[PreemptionLoss]:
    """Per preemption: what the preempted attempt reached, what the next one restored."""
    by_number = {a.number: a for a in attempts}
    out = []
    for p in preemptions:
        old, new = by_number.get(p.attempt), by_number.get(p.attempt + 1)
        saved = old.final_save if old else None
        restored = new.restored_step if new else None
        lost = None
        if old is not None and new is not None:
            lost = max(old.last_step - (restored or 0), 0)
        resume = None
        if old is not None and new is not None and new.restored_at is not None:
            gone = old.exited_at if old.exited_at is not None else old.ended
            if gone is not None:
                resume = max(new.restored_at - gone, 0.0)
        out.append(PreemptionLoss(p, saved, restored, lost, resume))
    return out


def cost_lines(outcome: Outcome) -> list[str]:
    """Spot vs all-on-demand for the seconds the job's pods ran."""
    spot_hourly = outcome.spot_hourly if outcome.spot_hourly is not None else DEFAULT_SPOT_HOURLY
    od_hourly = (
        outcome.on_demand_hourly
        if outcome.on_demand_hourly is not None
        else DEFAULT_ON_DEMAND_HOURLY
    )
    total = outcome.spot_seconds + outcome.on_demand_seconds
    paid = (outcome.spot_seconds * spot_hourly + outcome.on_demand_seconds * od_hourly) / 3600
    all_od = total * od_hourly / 3600
    saved = 1 - paid / all_od if all_od > 0 else 0.0
    return [
        f"pod time: {outcome.spot_seconds:.0f} s on spot, {outcome.on_demand_seconds:.0f} s "
        "on on-demand",
        f"cost at ${spot_hourly:.3f}/h spot vs ${od_hourly:.3f}/h on-demand: ${paid:.5f} "
        f"instead of ${all_od:.5f} all on-demand ({saved:.0%} saved)",
    ]


def summary(
    attempts: list[Attempt], preemptions: list[Preemption], outcome: Outcome, elapsed: float
) -> list[str]:
    """The lines the demo ends with."""
    lines = [
        f"job {outcome.phase} after {elapsed:.0f} s: {len(attempts)} attempt(s), "
        f"{len(preemptions)} preemption(s), {max((a.last_step for a in attempts), default=0)} "
        "steps"
    ]
    for i, loss in enumerate(losses(attempts, preemptions), 1):
        p = loss.preemption
        saved = f"saved step {loss.saved_step} on SIGTERM" if loss.saved_step else "no final save"
        restored = (
            f"attempt {p.attempt + 1} restored step {loss.restored_step}"
            if loss.restored_step is not None
            else f"attempt {p.attempt + 1} did not restore"
        )
        lost = "?" if loss.steps_lost is None else str(loss.steps_lost)
        resume = "?" if loss.resume_seconds is None else f"{loss.resume_seconds:.1f} s"
        lines.append(
            f"preemption {i}: node {p.node} at step {p.step} (attempt {p.attempt}); {saved}; "
            f"{restored}: {lost} steps lost; resumed {resume} after the trainer exited"
        )
    for a in attempts:
        span = ""
        if a.started is not None and a.ended is not None:
            span = f", ran {a.ended - a.started:.0f} s"
        lines.append(f"attempt {a.number}: pod {a.pod} on {a.node} ({a.capacity}){span}")
    return lines + cost_lines(outcome)


def draw(attempts: list[Attempt], preemptions: list[Preemption], path: Path) -> None:
    """Loss vs step across attempts with the preemptions marked; attempts on a node timeline."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 7.5), gridspec_kw={"height_ratios": [3, 2]}, constrained_layout=True
    )
    colors = plt.get_cmap("tab10")
    for a in attempts:
        if a.losses:
            steps, values = zip(*a.losses, strict=True)
            top.plot(steps, values, ".-", ms=3, lw=1, color=colors(a.number - 1),
                     label=f"attempt {a.number} ({a.node})")
    for i, p in enumerate(preemptions, 1):
        top.axvline(p.step, color="crimson", ls="--", lw=1)
        top.annotate(f"preemption {i}\n{p.node}", (p.step, 1), xycoords=("data", "axes fraction"),
                     xytext=(3, -4), textcoords="offset points", va="top", fontsize=8,
                     color="crimson")
    top.set_xlabel("global step")
    top.set_ylabel("training loss")
    top.set_yscale("log")
    top.set_title("spotrun demo: the digits job across preemptions")
    top.legend(loc="upper right", fontsize=8)

    nodes = sorted({a.node for a in attempts if a.node})
    row = {n: i for i, n in enumerate(nodes)}
    for a in attempts:
        if a.started is None or not a.node:
            continue
        end = a.ended if a.ended is not None else a.started
        bottom.barh(row[a.node], end - a.started, left=a.started, height=0.5,
                    color=colors(a.number - 1))
        bottom.text(a.started + (end - a.started) / 2, row[a.node], f"attempt {a.number}",
                    ha="center", va="center", fontsize=8, color="white")
    for p in preemptions:
        if p.node in row:
            bottom.plot([p.at], [row[p.node]], marker="x", color="crimson", ms=10, mew=2)
    bottom.set_yticks(range(len(nodes)), nodes)
    bottom.set_xlabel("seconds since the job was submitted (x: interruption notice)")
    bottom.set_title("attempts per node")
    fig.savefig(path, dpi=100)
    plt.close(fig)
