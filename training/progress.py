"""Training progress lines and their reader.

Rank 0 of a phase (:func:`training.phase.run_phase`) says what it plans at its start, one line
per finished epoch and how many epochs it ran at its end; a driver's progress bar
(``jobrec.console.FileProgress``) counts them with :func:`epoch_progress`. Both sides use
this module, so the bar's total is the number of epochs that actually run: ``max_steps`` and
early stopping end a phase before its configured epochs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

_EPOCH_DONE = re.compile(r"^\[(\w+)\] epoch (\d+)/(\d+) done in ")
# the plan, then the count that ran: either replaces the configured epochs
_EPOCHS = re.compile(r"^\[(\w+)\] (?:plan:|finished after) (\d+) epochs? ")


def planned_epochs(epochs: int, steps_per_epoch: int, total_steps: int) -> int:
    """Epochs a phase runs unless it stops early: ``max_steps`` may end it sooner."""
    return min(epochs, math.ceil(total_steps / max(steps_per_epoch, 1)))


def plan_line(kind: str, epochs: int, steps_per_epoch: int, total_steps: int) -> str:
    """The phase's first line: how many epochs and steps it will run."""
    n = planned_epochs(epochs, steps_per_epoch, total_steps)
    return f"[{kind}] plan: {n} epochs ({total_steps} steps, {steps_per_epoch} per epoch)"


def epoch_done_line(kind: str, epoch: int, epochs: int, seconds: float, detail: str) -> str:
    """The line after epoch ``epoch`` (0-based) of ``epochs``."""
    return f"[{kind}] epoch {epoch + 1}/{epochs} done in {seconds:.0f}s: {detail}"


def finished_line(kind: str, epochs_run: int, steps: int) -> str:
    """The phase's last line."""
    return f"[{kind}] finished after {epochs_run} epochs ({steps} steps)"


def epoch_progress(lines: Iterable[str], planned: Mapping[str, int]) -> tuple[int, int]:
    """``(epochs done, epochs in all)`` over the phases of ``planned`` (phase -> configured
    epochs) from their progress lines; a phase's plan and finished lines replace its
    configured count, so the total ends equal to what ran. Step lines are not epochs."""
    total = dict(planned)
    done: set[tuple[str, int]] = set()  # a resumed phase may repeat an epoch's line
    for line in lines:
        if m := _EPOCH_DONE.match(line):
            done.add((m.group(1), int(m.group(2))))
        elif m := _EPOCHS.match(line):
            total[m.group(1)] = int(m.group(2))
    n = sum(1 for kind, _ in done if kind in total)
    return n, max(sum(total.values()), n)
