"""What was mined, for a person: a summary table (frames per reason, per drive) and a contact
sheet of the chosen frames with their proposals drawn (green: detector, orange: backfill,
blue: interpolated), each tile captioned with drive, frame and reasons."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data.layout import DatasetError
from stopsign.train.data.mine.records import Candidate

COLOURS = {
    "detector": (0, 200, 0),
    "backfill": (0, 140, 255),
    "backfill+detector": (0, 200, 255),
    "interpolated": (255, 120, 0),
}


def summary_markdown(chosen: list[Candidate], candidates: list[Candidate], drives: list[dict]) -> str:
    """Markdown: frames per reason (candidates and chosen) and per drive."""
    lines = [
        "# edge-data mine summary",
        "",
        f"{len(chosen)} frames chosen from {len(candidates)} candidates in {len(drives)} sources.",
        "",
        "| reason | candidates | chosen |",
        "|---|---|---|",
    ]
    all_reasons = Counter(r for c in candidates for r in c.reason_names)
    chosen_reasons = Counter(r for c in chosen for r in c.reason_names)
    for reason, count in sorted(all_reasons.items()):
        lines.append(f"| {reason} | {count} | {chosen_reasons.get(reason, 0)} |")
    lines += [
        "",
        "| drive | source | frames | candidates | chosen | proposals |",
        "|---|---|---|---|---|---|",
    ]
    per_drive = Counter(c.drive for c in chosen)
    boxes = Counter()
    for c in chosen:
        boxes[c.drive] += len(c.proposals)
    for d in sorted(drives, key=lambda d: d["drive"]):
        lines.append(
            f"| {d['drive']} | {d['source']} | {d['frames']} | {d['candidates']} | "
            f"{per_drive.get(d['drive'], 0)} | {boxes.get(d['drive'], 0)} |"
        )
    return "\n".join(lines) + "\n"


def write_contact_sheet(
    chosen: list[Candidate], task: Path, out: Path, cols: int = 6, tile: int = 320, limit: int = 60
) -> Path:
    """A grid PNG of up to ``limit`` chosen frames (read from ``task``) with proposals drawn."""
    tiles = []
    for candidate in chosen[:limit]:
        image = cv2.imread(str(task / candidate.image))
        if image is None:
            raise DatasetError(f"{task / candidate.image}: cannot read the mined image")
        for p in candidate.proposals:
            x1, y1, x2, y2 = (round(v) for v in p.xyxy)
            cv2.rectangle(image, (x1, y1), (x2, y2), COLOURS.get(p.origin, (0, 0, 255)), 2)
        scale = min(tile / image.shape[1], (tile * 9 // 16) / image.shape[0])  # fit a 16:9 cell
        small = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
        canvas = np.zeros((tile * 9 // 16 + 28, tile, 3), np.uint8)
        canvas[: small.shape[0], : small.shape[1]] = small
        caption = f"{candidate.drive[:18]} #{candidate.index} {','.join(candidate.reason_names)}"
        cv2.putText(
            canvas, caption[:52], (3, tile * 9 // 16 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1
        )
        tiles.append(canvas)
    rows = []
    for start in range(0, len(tiles), cols):
        row = tiles[start : start + cols]
        row += [np.zeros_like(tiles[0])] * (cols - len(row))
        rows.append(np.hstack(row))
    if not cv2.imwrite(str(out), np.vstack(rows)):
        raise DatasetError(f"{out}: OpenCV could not write the contact sheet")
    return out
