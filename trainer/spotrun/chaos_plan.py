"""What ``spotrun chaos`` decides (pure): where to interrupt, what an ending means, what it says.

Interruptions are aimed at training steps, not instants: the run is cut into as many equal
slices as there are interruptions, and ``--seed`` picks one step in each, half the time an
epoch's last step (so end-of-epoch work, evaluation and ``scheduler.step()``, is hit), so they
spread over the whole run, late steps and the last step included, whatever the machine's speed.
The signal goes out once the run has logged that step (or a later one).
"""

from __future__ import annotations

import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass

SIGTERM, SIGKILL, SIGKILL_IN_SAVE, NONE = "sigterm", "sigkill", "sigkill-in-save", "none"


@dataclass(frozen=True)
class Interruption:
    kind: str  # SIGTERM, SIGKILL or SIGKILL_IN_SAVE (at the next save in progress)
    step: int  # sent once the run has logged this step or a later one


def plan(
    kills: int, sigkills: int, seed: int, total_steps: int, epoch_ends: Sequence[int] = ()
) -> list[Interruption]:
    """The interruptions in the order they are sent, their steps ascending over 1..total_steps.

    Every other SIGKILL is aimed at a save in progress. With more interruptions than steps,
    several share a step (each then lands right after the first step of its attempt).
    """
    kinds = [SIGTERM] * kills + [
        SIGKILL_IN_SAVE if i % 2 == 0 else SIGKILL for i in range(sigkills)
    ]
    chooser = random.Random(seed)
    chooser.shuffle(kinds)
    if not kinds or total_steps < 1:
        return []
    count, targets = len(kinds), []
    for i in range(count):
        low = min(i * total_steps // count + 1, total_steps)
        high = max((i + 1) * total_steps // count, low)
        ends = [e for e in epoch_ends if low <= e <= high]
        if ends and chooser.random() < 0.5:
            targets.append(chooser.choice(ends))
        else:
            targets.append(chooser.randint(low, high))
    return [Interruption(kind, step) for kind, step in zip(kinds, targets, strict=True)]


def epoch_ends(steps: Sequence[tuple[int, int | None]]) -> list[int]:
    """The last step of each epoch, from (step, epoch) in the order logged; the run's last step
    is the last epoch's end. Without epochs (a hand-written loop) only the last step."""
    ends = [
        step
        for (step, epoch), (_, following) in zip(steps, steps[1:], strict=False)
        if epoch is not None and following is not None and following != epoch
    ]
    return [*ends, steps[-1][0]] if steps else []


def classify(
    kind: str, signalled: bool, finished_first: bool, exit_code: int
) -> tuple[bool, str | None]:
    """(whether the attempt was really interrupted, a problem with how it ended or None).

    ``finished_first``: the script had closed its Checkpointer (its exit note is older than the
    signal): an interruption that lands after that counts as none, whatever it did to the exit
    code. A SIGTERM that did interrupt must end in exit 0 (saved, then exited), a SIGKILL -9.
    """
    if not signalled or finished_first:
        allowed = {0} | ({-signal.SIGTERM, -signal.SIGKILL} if signalled else set())
        if exit_code in allowed:
            return False, None
        return False, f"ended with exit {exit_code} though it was not interrupted"
    expected = 0 if kind == SIGTERM else -signal.SIGKILL
    if exit_code == expected:
        return True, None
    return True, f"ended with exit {exit_code} after a {kind}, expected {expected}"


def count_line(kinds: Sequence[str], planned: int) -> str:
    """``interruptions: 5 (3 SIGTERM, 2 SIGKILL)`` over the interruptions that really happened."""
    sigterms = sum(kind == SIGTERM for kind in kinds)
    line = f"interruptions: {len(kinds)} ({sigterms} SIGTERM, {len(kinds) - sigterms} SIGKILL)"
    if len(kinds) < planned:
        missed = planned - len(kinds)
        line += f"; {missed} of the {planned} planned came after the script had finished (none)"
    return line


def fresh_dir_refusal(fresh_dir: bool, storage_uri: str | None) -> str | None:
    """Why ``--fresh-dir`` cannot prove anything here, or None."""
    if not fresh_dir or storage_uri:
        return None
    return (
        "--fresh-dir gives every restart an empty checkpoint directory, and SPOTRUN_STORAGE_URI "
        "is not set, so nothing would carry over: every attempt would start again from step 0 "
        "and the comparison would prove nothing. Set SPOTRUN_STORAGE_URI=s3://bucket/prefix "
        "(with AWS_ENDPOINT_URL_S3 and credentials) to resume from S3, or drop --fresh-dir"
    )
