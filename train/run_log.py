"""Per-epoch logs of a run: results.csv (rewritten whole, so a rollback truncates it), TensorBoard
scalars when the ``tensorboard`` package is installed, and results.png curves.

results.png is redrawn after an epoch only when the last drawing is ``plot_interval_s`` old (a
minute by default), and always when the log is closed at the end of the run: drawing its 13 panels
takes ~1 s on a 2-core CPU (2 s with a tight layout), as long as a small model's epoch on small
data. An epoch of real training is longer than the interval, so the curves follow every epoch there.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.train.plots import plot_results

COLUMNS = (
    "epoch",
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
)


# Seconds between results.png drawings during a run (see the module docstring).
PLOT_INTERVAL_S = 60.0


class RunLog:
    """Holds the epoch rows of a run and writes them out after every epoch (results.png: see the
    module docstring). ``clock`` gives seconds (``time.monotonic`` by default)."""

    def __init__(
        self,
        run_dir: Path,
        rows: list[dict[str, float]] | None = None,
        tensorboard: bool = True,
        plot_interval_s: float = PLOT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if plot_interval_s < 0:
            raise ValueError(f"plot_interval_s must be >= 0 seconds, got {plot_interval_s}")
        self.run_dir = run_dir
        self.rows: list[dict[str, float]] = list(rows or [])
        self.plot_interval_s = plot_interval_s
        self._clock = clock
        self._plotted_at = clock()  # the interval counts from the log's opening
        self._plotted_rows = -1  # rows in results.png as last drawn; -1: not drawn by this log
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("TensorBoard logging off: `pip install tensorboard` to enable it")
            else:
                self._tb = SummaryWriter(str(run_dir))

    def add(self, row: dict[str, float]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown results columns {sorted(unknown)}")
        self.rows.append({k: float(row.get(k, float("nan"))) for k in COLUMNS})
        if self._tb is not None:
            for key, value in row.items():
                if key != "epoch":
                    self._tb.add_scalar(key, value, int(row["epoch"]))
            self._tb.flush()
        self.write(plot=self._clock() - self._plotted_at >= self.plot_interval_s)

    def write(self, plot: bool = True) -> None:
        """results.csv, and results.png when ``plot`` (and there are rows)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([int(row["epoch"])] + [f"{row[k]:.6g}" for k in COLUMNS[1:]])
        atomic_write_text(self.run_dir / "results.csv", buffer.getvalue())
        if plot and self.rows:
            self._plot()

    def _plot(self) -> None:
        plot_results(self.rows, self.run_dir / "results.png")
        self._plotted_at, self._plotted_rows = self._clock(), len(self.rows)

    def close(self) -> None:
        """Draws results.png when it lacks rows, and closes the TensorBoard writer."""
        if self.rows and self._plotted_rows != len(self.rows):
            self._plot()
        if self._tb is not None:
            self._tb.close()


def read_results(path: Path) -> list[dict[str, float]]:
    """Rows of a results.csv (for tests and for resuming)."""
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
