"""Metrics of a replay against a drive's ``labels.jsonl``: what the car would have experienced.

- frame AP@0.5 of the raw detector and of the smoothed output (confirmed tracks per frame);
- delay from the sign's first labelled frame (and from its first frame above 20 px) to the
  ``stop_sign_ahead`` event, in frames and milliseconds of recorded time;
- false events: ``stop_sign_ahead`` whose box overlaps no labelled sign, and per hour of driving;
- ID switches: extra ``stop_sign_ahead`` tracks on the same labelled sign.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stopsign.edge.replay.drive import DriveLabels
from stopsign.edge.replay.runner import ReplayResult
from stopsign.edge.tracking import AHEAD
from stopsign.edge.vision.metrics import compute_metrics, match_image
from stopsign.edge.vision.postprocess import box_iou

MIN_SIZE_PX = 20.0


@dataclass
class DriveMetrics:
    frames: int
    labelled_frames: int
    ap50_raw: float | None
    ap50_smoothed: float | None
    events: int
    false_events: int
    false_events_per_hour: float
    missed: bool
    first_label_frame: int | None
    first_20px_frame: int | None
    event_frame: int | None
    delay_frames: int | None
    delay_ms: float | None
    delay_from_20px_frames: int | None
    delay_from_20px_ms: float | None
    first_raw_hit_frame: int | None  # first frame the raw detector fired (at the enter threshold) on the sign
    raw_false_events: int  # times a threshold-only detector would have fired on something unlabelled
    id_switches: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ap50(per_frame: list[tuple[int, np.ndarray, np.ndarray]], labels: DriveLabels) -> float | None:
    """per_frame: (drive frame index, boxes (n, 4), scores (n,)) of each processed frame."""
    if not any(len(labels.boxes[i]) for i, _, _ in per_frame):
        return None
    matched = [
        match_image(boxes, scores, np.zeros(len(scores)), labels.boxes[i], np.zeros(len(labels.boxes[i])))
        for i, boxes, scores in per_frame
    ]
    return round(compute_metrics(matched, 1).map50, 4)


def _overlaps(box: list[float] | np.ndarray, gt: np.ndarray, threshold: float = 0.3) -> bool:
    return bool(len(gt)) and float(box_iou(np.asarray([box], np.float32), gt).max()) >= threshold


def drive_metrics(result: ReplayResult, labels: DriveLabels) -> DriveMetrics:
    """Metrics over the processed frames (all of them, except in realtime mode) against ``labels``.

    Frame numbers are the drive's; delays use the recorded times, so they hold at any frame rate.
    """
    frames = result.frames
    times = result.timestamps or [f.timestamp_ns for f in frames]
    raw = [(f.frame, f.detections.xyxy, f.detections.score) for f in frames]
    smoothed = [
        (
            f.frame,
            np.array([t["box"] for t in f.tracks], np.float32).reshape(-1, 4),
            np.array([t["score"] for t in f.tracks]),
        )
        for f in frames
    ]
    labelled = [i for i in range(len(times)) if labels.present(i)]
    big = [i for i in labelled if float((labels.boxes[i][:, 3] - labels.boxes[i][:, 1]).max()) > MIN_SIZE_PX]
    ahead = [e for e in result.events if e["event"] == AHEAD]
    true_events = [e for e in ahead if _overlaps(e["box"], labels.boxes[e["frame"]])]
    false_events = len(ahead) - len(true_events)
    duration_h = max((times[-1] - times[0]) / 3.6e12, 1e-9) if len(times) > 1 else 1e-9
    first = labelled[0] if labelled else None
    event_frame = min((e["frame"] for e in true_events), default=None)
    enter = result.spec.operating_threshold
    raw_hits = [
        i for i, boxes, scores in raw
        if labels.present(i) and any(s >= enter and _overlaps(b, labels.boxes[i]) for b, s in zip(boxes, scores))
    ]  # fmt: skip
    # A threshold-only detector "fires" on every rising edge of a confident unlabelled detection.
    false_frames = [
        any(s >= enter and not _overlaps(b, labels.boxes[i]) for b, s in zip(boxes, scores))
        for i, boxes, scores in raw
    ]
    raw_false_events = sum(1 for i, f in enumerate(false_frames) if f and (i == 0 or not false_frames[i - 1]))
    return DriveMetrics(
        frames=len(times),
        labelled_frames=len(labelled),
        ap50_raw=_ap50(raw, labels),
        ap50_smoothed=_ap50(smoothed, labels),
        events=len(ahead),
        false_events=false_events,
        false_events_per_hour=round(false_events / duration_h, 1),
        missed=bool(labelled) and event_frame is None,
        first_label_frame=first,
        first_20px_frame=big[0] if big else None,
        event_frame=event_frame,
        delay_frames=None if event_frame is None or first is None else event_frame - first,
        delay_ms=None
        if event_frame is None or first is None
        else round((times[event_frame] - times[first]) / 1e6, 1),
        delay_from_20px_frames=None if event_frame is None or not big else event_frame - big[0],
        delay_from_20px_ms=None
        if event_frame is None or not big
        else round((times[event_frame] - times[big[0]]) / 1e6, 1),
        first_raw_hit_frame=raw_hits[0] if raw_hits else None,
        raw_false_events=raw_false_events,
        id_switches=max(len({e["track_id"] for e in true_events}) - 1, 0),
    )
