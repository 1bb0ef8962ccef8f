"""Parser for YOLO label lines (``cls cx cy w h``, normalised), strict enough to catch every bad line.

Each bad line gets its own reason, so ``edge-data check`` and the training loader can say
``labels/x.txt:3: class id 7 not in [0, 1)`` instead of failing later with a shape error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Boxes may poke out of the image by rounding error in exports; more than this is a real error.
EDGE_TOLERANCE = 1e-3


class LabelError(ValueError):
    """One bad label line; the message is the reason (the caller adds file:line)."""


@dataclass(frozen=True)
class LabelLine:
    """One parsed label: class id and normalised centre/size (all in [0, 1])."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float


def parse_label_line(line: str, nc: int) -> LabelLine:
    """Parse one non-blank line ``cls cx cy w h``; raise LabelError with the reason when it is bad."""
    fields = line.split()
    if len(fields) != 5:
        raise LabelError(f"expected 5 fields 'cls cx cy w h', got {len(fields)}: {line.strip()!r}")
    try:
        cls_value = float(fields[0])
    except ValueError:
        raise LabelError(f"class id {fields[0]!r} is not a number") from None
    if not math.isfinite(cls_value) or cls_value != int(cls_value):
        raise LabelError(f"class id {fields[0]!r} is not an integer")
    class_id = int(cls_value)
    if not 0 <= class_id < nc:
        raise LabelError(f"class id {class_id} not in [0, {nc}) (dataset has {nc} class(es))")
    values: list[float] = []
    for name, text in zip(("cx", "cy", "w", "h"), fields[1:], strict=True):
        try:
            value = float(text)
        except ValueError:
            raise LabelError(f"{name} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise LabelError(f"{name} is {text} (NaN or infinite)")
        values.append(value)
    cx, cy, w, h = values
    if w <= 0 or h <= 0:
        raise LabelError(f"box size must be positive, got w={w:g} h={h:g} (zero or negative size)")
    for name, value in (("cx", cx), ("cy", cy), ("w", w), ("h", h)):
        if not 0.0 <= value <= 1.0:
            raise LabelError(f"{name}={value:g} out of [0, 1] (labels must be normalised)")
    lo_x, hi_x, lo_y, hi_y = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    if (
        lo_x < -EDGE_TOLERANCE
        or hi_x > 1 + EDGE_TOLERANCE
        or lo_y < -EDGE_TOLERANCE
        or hi_y > 1 + EDGE_TOLERANCE
    ):
        raise LabelError(
            f"box x[{lo_x:.4f}, {hi_x:.4f}] y[{lo_y:.4f}, {hi_y:.4f}] extends outside the image [0, 1]"
        )
    return LabelLine(class_id, cx, cy, w, h)


def parse_label_text(text: str, nc: int) -> tuple[list[LabelLine], list[tuple[int, str]]]:
    """Parse a whole label file; returns (good lines, [(1-based line number, reason), ...]).

    Blank lines are allowed (and a missing final newline is fine): files are parsed one at a time.
    """
    good: list[LabelLine] = []
    bad: list[tuple[int, str]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            good.append(parse_label_line(line, nc))
        except LabelError as exc:
            bad.append((line_no, str(exc)))
    return good, bad


def to_array(lines: list[LabelLine]) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (n,) int64, boxes (n, 4) float32 normalised cx cy w h)."""
    cls = np.array([ln.class_id for ln in lines], dtype=np.int64)
    boxes = np.array([[ln.cx, ln.cy, ln.w, ln.h] for ln in lines], dtype=np.float32).reshape(-1, 4)
    return cls, boxes
