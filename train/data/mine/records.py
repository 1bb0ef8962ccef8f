"""What a scan keeps per frame, and what mining proposes: plain dataclasses with a JSON form.

Boxes are ``[x1, y1, x2, y2]`` in source-frame pixels (floats); detection rows add the score as a
fifth value. Times are the source's stamps in nanoseconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stopsign.edge.vision.postprocess import box_iou

Row = list[float]  # x1, y1, x2, y2, score


@dataclass
class TrackSeen:
    """One track as the tracker held it after a frame: smoothed ``box``, ``hit`` when a detection
    updated it on this frame (``det`` is then that detection's box), ``confirmed`` once announced."""

    track_id: int
    box: list[float]
    score: float
    hit: bool
    confirmed: bool
    det: list[float] | None = None


@dataclass
class FrameRecord:
    """One frame of a scan.

    ``merged``: the detector with tiles (what ``edge-detect --tiles`` reports), ``whole``: the
    whole frame alone, ``tiles``: the tiles alone, merged (None when no tile was planned),
    ``second``: a second model on the same batch (e.g. INT8 against FP32; None without one).
    All rows are (x1, y1, x2, y2, score) down to the scan's confidence floor.
    """

    index: int
    stamp_ns: int
    merged: list[Row]
    whole: list[Row]
    tiles: list[Row] | None
    second: list[Row] | None
    tracks: list[TrackSeen]
    dhash: int
    width: int = 0
    height: int = 0

    @staticmethod
    def from_dict(data: dict[str, Any]) -> FrameRecord:
        tracks = [TrackSeen(**t) for t in data.pop("tracks")]
        return FrameRecord(tracks=tracks, **data)


@dataclass
class Proposal:
    """A proposed stop-sign box: ``origin`` is ``detector`` (its score), ``backfill`` (a confirmed
    track followed backwards; score = the track's confidence) or ``backfill+detector`` (the
    backfilled box snapped to a low-scoring detection)."""

    xyxy: list[float]
    score: float
    origin: str
    track_id: int | None = None


@dataclass
class Candidate:
    """A frame worth labelling: where it is (``source``, ``index``, ``stamp_ns``), why
    (``reasons``, each ``name`` or ``name: detail``), how much (``priority``), the proposed boxes,
    its 64-bit perceptual hash, and its image (relative to the shard folder) once written."""

    source: str
    drive: str
    index: int
    stamp_ns: int
    width: int
    height: int
    reasons: list[str]
    priority: float
    proposals: list[Proposal] = field(default_factory=list)
    dhash: int = 0
    image: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.drive, self.index)

    @property
    def reason_names(self) -> list[str]:
        return [r.split(":", 1)[0] for r in self.reasons]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Candidate:
        proposals = [Proposal(**p) for p in data.pop("proposals", [])]
        return Candidate(proposals=proposals, **data)


def rows_to_array(rows: list[Row] | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows -> ((n, 4) float32 boxes, (n,) float32 scores); empty arrays for None or []."""
    if not rows:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    array = np.asarray(rows, np.float32).reshape(-1, 5)
    return array[:, :4], array[:, 4]


def best_overlap(
    box: list[float], rows: list[Row] | None, min_score: float = 0.0
) -> tuple[float, Row | None]:
    """The highest IoU between ``box`` and a row scoring at least ``min_score``, and that row."""
    xyxy, score = rows_to_array(rows)
    keep = score >= min_score
    if not keep.any():
        return 0.0, None
    ious = box_iou(np.asarray([box], np.float32), xyxy[keep])[0]
    best = int(np.argmax(ious))
    kept_rows = [r for r, k in zip(rows or [], keep) if k]
    return float(ious[best]), kept_rows[best]


def iou(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes."""
    return float(box_iou(np.asarray([a], np.float32), np.asarray([b], np.float32))[0, 0])
