"""``metrics.csv``: one row a logged training step, kept next to the checkpoints.

    step,epoch,loss,accuracy,samples_per_s_emulated,samples_per_s_modelled
    20,0,2.104511,0.351562,18034.2,5791505.8

``loss`` and ``accuracy`` are the means over the steps since the row before (as the printed
line; accuracy empty for a model that is not a classifier); ``samples_per_s_emulated`` is what
the emulator achieved over those steps (wall time, checkpoint writes and evaluation left out),
``samples_per_s_modelled`` what the performance model gives the fabric (the global batch over
the modelled time of one step: every section once; collectives are not modelled).

A run appends to the file it finds, so a resumed run continues it. Rows are whole lines written
with one ``write`` to a file opened for appending: a run killed at any moment leaves whole rows
(a line cut short by a full disk is dropped on the next start). On start, rows past the step
the run resumes from (a longer run whose end is being redone from an earlier checkpoint) are
dropped, the file rewritten atomically, so the file always tells one history.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.machine.atomic import atomic_write_bytes
from tools.cli import ToolError

HEADER = "step,epoch,loss,accuracy,samples_per_s_emulated,samples_per_s_modelled"


@dataclass(frozen=True)
class MetricsRow:
    step: int
    epoch: int
    loss: float
    accuracy: float | None
    samples_per_s_emulated: float
    samples_per_s_modelled: float

    def line(self) -> str:
        accuracy = "" if self.accuracy is None else f"{self.accuracy:.6f}"
        return (
            f"{self.step},{self.epoch},{_number(self.loss)},{accuracy},"
            f"{_number(self.samples_per_s_emulated, 1)},{_number(self.samples_per_s_modelled, 1)}"
        )


def _number(x: float, digits: int = 6) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


class MetricsLog:
    """The ``metrics.csv`` of a training run that starts (or resumes) at step ``start``."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        kept = self._history(start)
        if kept is not None:
            atomic_write_bytes(path, "".join(line + "\n" for line in [HEADER, *kept]).encode())

    def _history(self, start: int) -> list[str] | None:
        """The rows to keep when the file must be (re)written, else None (append as it is)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        torn = lines.pop() != ""  # the last line lacks its newline: cut short
        if not lines or lines[0] != HEADER:
            raise ToolError(
                f"{self.path} is not a metrics file of rdu-run (its first line is not "
                f"'{HEADER}'): move it away or use another --ckpt-dir"
            )
        rows = lines[1:]
        kept = [r for r in rows if _step(r) <= start]
        return kept if torn or len(kept) != len(rows) else None

    def append(self, row: MetricsRow) -> None:
        """Add ``row`` at the end, as one write of a whole line."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (row.line() + "\n").encode())
        finally:
            os.close(fd)


def _step(line: str) -> float:
    """The step of a row (``inf`` for a line that is not a row: dropped)."""
    head = line.split(",", 1)[0]
    return int(head) if head.isdigit() else math.inf


class RunMetrics:
    """The rows of a training run as it goes: the emulator's samples/s over the steps since the
    last row, its pauses (checkpoints, evaluation) left out; ``log`` None on a rank that writes
    nothing (data-parallel ranks but 0)."""

    def __init__(self, log: MetricsLog | None, samples_per_step: int, modelled: float) -> None:
        self.log_file = log
        self.samples_per_step = samples_per_step
        """The global batch: every rank's samples."""
        self.modelled = modelled
        """Samples a second on the modelled fabric."""
        self.restart()

    def restart(self) -> None:
        """Start timing the steps up to the next row."""
        self.started = time.perf_counter()
        self.paused = 0.0

    def pause(self) -> None:
        self.paused -= time.perf_counter()

    def resume(self) -> None:
        self.paused += time.perf_counter()

    def log(self, step: int, epoch: int, loss: float, accuracy: float | None, steps: int) -> None:
        """The row of ``step``, over the ``steps`` steps since the last row."""
        seconds = time.perf_counter() - self.started - self.paused
        emulated = steps * self.samples_per_step / seconds if seconds > 0 else math.inf
        if self.log_file is not None:
            self.log_file.append(MetricsRow(step, epoch, loss, accuracy, emulated, self.modelled))
        self.restart()
