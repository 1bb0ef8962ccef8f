"""Counts per source, role and split, and a histogram of stop-box sizes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.labels import parse_label_text, to_array


@dataclass
class DatasetStats:
    images: int = 0
    stop_boxes: int = 0
    per_source_role: Counter[tuple[str, str]] = field(default_factory=Counter)
    boxes_per_source: Counter[str] = field(default_factory=Counter)
    split: dict[str, int] = field(default_factory=dict)
    box_sides_px: list[float] = field(default_factory=list)  # sqrt(w*h) of each stop box in pixels

    def lines(self) -> list[str]:
        out = [f"images {self.images}, stop boxes {self.stop_boxes}, split {self.split}"]
        for source in sorted({s for s, _ in self.per_source_role}):
            roles = ", ".join(f"{r}={self.per_source_role[(source, r)]}" for r in layout.ROLES)
            out.append(f"  {source}: {roles}; stop boxes {self.boxes_per_source[source]}")
        if self.box_sides_px:
            q = np.percentile(self.box_sides_px, [0, 10, 50, 90, 100]).round(1).tolist()
            out.append(f"  stop box side px (min/p10/median/p90/max): {q}")
        return out


def dataset_stats(root: Path) -> DatasetStats:
    root = Path(root)
    stats = DatasetStats()
    records = layout.read_sources(root)
    for image in layout.list_images(root):
        rec = records.get(image.name)
        source, role = (rec.source, rec.role) if rec else ("?", "?")
        stats.images += 1
        stats.per_source_role[(source, role)] += 1
        label = layout.label_path_for(image)
        if not label.is_file():
            continue
        _, boxes = to_array(parse_label_text(label.read_text(), 1)[0])
        if len(boxes):
            # Header-only decode would be faster, but cv2 has none; reduced decode gives the size / 8.
            small = cv2.imread(str(image), cv2.IMREAD_REDUCED_GRAYSCALE_8)
            h, w = (small.shape[0] * 8, small.shape[1] * 8) if small is not None else (0, 0)
            stats.box_sides_px += np.sqrt(boxes[:, 2] * w * boxes[:, 3] * h).tolist()
        stats.stop_boxes += len(boxes)
        stats.boxes_per_source[source] += len(boxes)
    stats.split = {name: len(layout.read_list(root, name)) for name in (layout.TRAIN_LIST, layout.VAL_LIST)}
    return stats


def write_box_histogram(stats: DatasetStats, out: Path) -> Path:
    """PNG histogram of stop-box side lengths (log-spaced bins, 4 px to 1024 px)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    bins = np.geomspace(4, 1024, 25)
    ax.hist(stats.box_sides_px, bins=bins, color="tab:red")
    ax.set_xscale("log")
    ax.set_xlabel("stop box side sqrt(w*h) [px, approx.]")
    ax.set_ylabel("boxes")
    ax.set_title(f"{stats.stop_boxes} stop boxes in {stats.images} images")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
