"""The memory slope of soak runs, from their probe rows: a table, a projection and one plot.

    .venv/bin/python bench/memory_slope.py runs/replay/soak.json runs/live/soak.json \\
        --labels replay live --png docs/img/soak_slope.png

Reads ``soak.json`` files written by ``bench/soak.py --malloc-info`` (one probe row every
``--block`` frames; the first row is the end of warm-up) and fits a least-squares line to each
figure against frames from that row on: RSS, its anonymous and file-backed parts, glibc's heap
(in use, free, taken from the system) and the count of live Python objects. Prints a Markdown table of the rows and the slopes
in MB per 100k frames (over all rows, and over the second half: a growth that levels off has a
smaller late slope), and a projection of RSS at 30 fps (8 hours, a week): the last row carried on
along each slope, a straight line drawn from the frames measured and never more than that.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FIGURES = ("rss_mb", "rss_anon_mb", "rss_file_mb", "heap_in_use_mb", "heap_free_mb", "heap_system_mb",
           "python_kblocks")  # fmt: skip
PER = 100_000  # slopes are in MB per this many frames
FPS = 30.0
HORIZONS_H = {"8 hours": 8.0, "a week": 24.0 * 7}


@dataclass(frozen=True)
class Run:
    """One soak's probe rows as columns: ``frames`` and each of ``FIGURES`` (MB)."""

    label: str
    frames: np.ndarray
    columns: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: Path, label: str) -> Run:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":  # probes.jsonl: the rows of a run still going
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text).get("probes") or []
        if len(rows) < 2 or any("malloc" not in row for row in rows):
            raise ValueError(
                f"{path}: needs two or more probe rows with malloc_info (bench/soak.py --malloc-info)"
            )
        columns = {
            "rss_mb": [row["rss_mb"] for row in rows],
            "rss_anon_mb": [row["rss_anon_mb"] for row in rows],
            "rss_file_mb": [row["rss_file_mb"] for row in rows],
            "heap_in_use_mb": [row["malloc"]["in_use_mb"] for row in rows],
            "heap_free_mb": [row["malloc"]["free_mb"] for row in rows],
            "heap_system_mb": [row["malloc"]["system_mb"] for row in rows],
            # Thousands of live Python objects (sys.getallocatedblocks); NaN in rows made before it.
            "python_kblocks": [row.get("python_blocks", float("nan")) / 1000 for row in rows],
        }
        frames = np.array([row["frames"] for row in rows], dtype=np.float64)
        return cls(
            label, frames, {key: np.array(values, dtype=np.float64) for key, values in columns.items()}
        )

    def _rows(self, late: bool) -> slice:
        # The second half of the rows (at least two): a growth that levels off shows there as a
        # smaller slope than over the whole run.
        return slice(min(len(self.frames) // 2, len(self.frames) - 2), None) if late else slice(None)

    def slope(self, key: str, late: bool = False) -> float:
        """Per ``PER`` frames (MB, or thousands of Python objects), least squares over every row
        (the first is the end of warm-up), or over the second half with ``late``; NaN where the
        figure was not recorded."""
        rows = self._rows(late)
        values = self.columns[key][rows]
        if np.isnan(values).any():
            return float("nan")
        return float(np.polyfit(self.frames[rows], values, 1)[0] * PER)

    def projection(self, hours: float, late: bool = False) -> float:
        """RSS (MB) after ``hours`` at ``FPS``: the last row's RSS carried on at the fitted slope.
        An extrapolation of a straight line, no more."""
        frames = hours * 3600 * FPS
        return float(
            self.columns["rss_mb"][-1] + self.slope("rss_mb", late) / PER * (frames - self.frames[-1])
        )


def markdown(runs: list[Run]) -> str:
    lines: list[str] = []
    for run in runs:
        lines += [
            f"**{run.label}**",
            "",
            "| frames | " + " | ".join(FIGURES) + " |",
            "|---" * (len(FIGURES) + 1) + "|",
        ]
        for i, frames in enumerate(run.frames):
            lines.append(
                f"| {int(frames):,} | " + " | ".join(f"{run.columns[k][i]:.2f}" for k in FIGURES) + " |"
            )
        lines += [
            "",
            f"slope, MB per {PER:,} frames: " + ", ".join(f"{k} {run.slope(k):+.2f}" for k in FIGURES),
            "",
        ]
    lines += [f"| run | frames measured | RSS slope, MB / {PER:,} frames: all rows / second half | "
              + " | ".join(f"RSS after {name} at {FPS:g} fps (projection: all / second half)" for name in HORIZONS_H)
              + " |", "|---" * (3 + len(HORIZONS_H)) + "|"]  # fmt: skip
    for run in runs:
        span = f"{int(run.frames[0]):,}-{int(run.frames[-1]):,}"
        projected = " | ".join(
            f"{run.projection(h):.0f} / {run.projection(h, late=True):.0f} MB" for h in HORIZONS_H.values()
        )
        slopes = f"{run.slope('rss_mb'):+.2f} / {run.slope('rss_mb', late=True):+.2f}"
        lines.append(f"| {run.label} | {span} | {slopes} | {projected} |")
    return "\n".join(lines)


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        k = run.frames / 1000
        (line,) = axes[0].plot(k, run.columns["rss_mb"], marker="o", ms=3, label=f"{run.label}: RSS")
        axes[0].plot(
            k, run.columns["rss_anon_mb"], ls="--", color=line.get_color(), label=f"{run.label}: anon"
        )
        axes[1].plot(k, run.columns["heap_in_use_mb"], marker="o", ms=3, color=line.get_color(),
                     label=f"{run.label}: in use")  # fmt: skip
        axes[1].plot(
            k, run.columns["heap_free_mb"], ls=":", color=line.get_color(), label=f"{run.label}: free"
        )
    axes[0].set_title("process RSS (MB)")
    axes[1].set_title("glibc heap, malloc_info (MB)")
    for ax in axes:
        ax.set_xlabel("frames (thousands)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="soak.json (or a running soak's probes.jsonl) of --malloc-info runs",
    )
    parser.add_argument("--labels", nargs="+", help="one per result (default: the folder names)")
    parser.add_argument("--png", type=Path, help="write the plot here")
    parser.add_argument("--json", type=Path, help="write the slopes and projections here")
    args = parser.parse_args()
    labels = args.labels or [path.parent.name for path in args.results]
    if len(labels) != len(args.results):
        parser.error(f"{len(labels)} labels for {len(args.results)} results")
    try:
        runs = [Run.load(path, label) for path, label in zip(args.results, labels)]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(str(exc))
    print(markdown(runs))
    if args.png:
        plot(runs, args.png)
    if args.json:
        summary: dict[str, Any] = {
            run.label: {
                "frames": [int(run.frames[0]), int(run.frames[-1])],
                "slope_mb_per_100k": {key: round(run.slope(key), 3) for key in FIGURES},
                "slope_mb_per_100k_second_half": {
                    key: round(run.slope(key, late=True), 3) for key in FIGURES
                },
                "projection_rss_mb": {name: round(run.projection(h), 1) for name, h in HORIZONS_H.items()},
                "projection_rss_mb_second_half": {
                    name: round(run.projection(h, late=True), 1) for name, h in HORIZONS_H.items()
                },
            }
            for run in runs
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
