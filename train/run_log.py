"""Per-epoch logs of a run: results.csv (rewritten whole, so a rollback truncates it), TensorBoard
scalars when the ``tensorboard`` package is installed, and results.png curves."""

from __future__ import annotations

import csv
import io
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


class RunLog:
    """Holds the epoch rows of a run and writes them out after every epoch."""

    def __init__(self, run_dir: Path, rows: list[dict[str, float]] | None = None, tensorboard: bool = True):
        self.run_dir = run_dir
        self.rows: list[dict[str, float]] = list(rows or [])
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
        self.write()

    def write(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([int(row["epoch"])] + [f"{row[k]:.6g}" for k in COLUMNS[1:]])
        atomic_write_text(self.run_dir / "results.csv", buffer.getvalue())
        if self.rows:
            plot_results(self.rows, self.run_dir / "results.png")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_results(path: Path) -> list[dict[str, float]]:
    """Rows of a results.csv (for tests and for resuming)."""
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
