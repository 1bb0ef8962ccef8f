"""Made-up scans for the mining tests: frames, detections and track snapshots built by hand or
by the real tracker on synthetic detections."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stopsign.edge.tracking import Tracker, TrackerConfig
from stopsign.edge.vision.detections import Detections
from stopsign.train.data.far_drives import ApproachOptions, build_far_approach
from stopsign.train.data.mine.records import FrameRecord, TrackSeen

FPS = 15.0
STEP_NS = round(1e9 / FPS)


def frame(index: int, merged=(), whole=None, tiles=None, second=None, tracks=(), dhash=0) -> FrameRecord:
    """One FrameRecord; ``whole`` defaults to ``merged``."""
    merged = [list(r) for r in merged]
    whole_rows = [list(r) for r in whole] if whole is not None else merged
    return FrameRecord(index, index * STEP_NS, merged, whole_rows,
                       None if tiles is None else [list(r) for r in tiles],
                       None if second is None else [list(r) for r in second], list(tracks), dhash, 1280, 720)  # fmt: skip


def seen(track_id: int, box, hit=True, confirmed=True, score=0.8) -> TrackSeen:
    return TrackSeen(track_id, list(box), score, hit, confirmed, list(box) if hit else None)


def approach_boxes(frames: int, start_m=80.0, end_m=15.0, focal=1100.0, lateral_m=3.0, height_m=1.0,
                   centre=(640.0, 360.0), sign_m=0.75) -> list[list[float]]:  # fmt: skip
    """True xyxy boxes of a sign approached at constant speed by a pinhole camera."""
    boxes = []
    for i in range(frames):
        z = start_m + (end_m - start_m) * i / (frames - 1)
        w = focal * sign_m / z
        cx, cy = centre[0] + focal * lateral_m / z, centre[1] - focal * height_m / z
        boxes.append([cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2])
    return boxes


def tracked_scan(detections_per_frame: list[list[list[float]]]) -> list[FrameRecord]:
    """Run the real tracker on per-frame detection rows (x1, y1, x2, y2, score) -> FrameRecords."""
    tracker = Tracker(TrackerConfig(enter_threshold=0.4, stay_threshold=0.24))
    out = []
    for index, rows in enumerate(detections_per_frame):
        array = np.asarray(rows, np.float32).reshape(-1, 5)
        dets = Detections(array[:, :4], array[:, 4], np.zeros(len(array), np.int64))
        tracker.update(Detections(dets.xyxy[dets.score >= 0.25], dets.score[dets.score >= 0.25],
                                  dets.class_id[dets.score >= 0.25]), index, index * STEP_NS)  # fmt: skip
        tracks = []
        for t in tracker.tracks:
            hit = t.last_seen_frame == index
            det = None
            if hit:
                best = max(rows, key=lambda r: _iou(r[:4], t.box))
                det = [float(v) for v in best[:4]]
            tracks.append(TrackSeen(t.track_id, [float(v) for v in t.box], t.score, hit, t.confirmed, det))
        out.append(frame(index, rows, tracks=tracks))
    return out


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def made_up_drives(root: Path, count: int = 3) -> list[Path]:
    """``count`` 11-frame drive folders: approaches (40 -> 10 m at 5 fps) to a composited sign on
    made-up 640x360 road frames (sky and road gradients with noise)."""
    out = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        sky = np.linspace(200, 120, 180)[:, None, None] * np.ones((1, 640, 3))
        road = np.linspace(90, 60, 180)[:, None, None] * np.ones((1, 640, 3))
        image = np.concatenate([sky, road]).astype(np.uint8)
        image = cv2.add(image, rng.integers(0, 20, image.shape, dtype=np.uint8))
        folder = root / f"drive_{seed}"
        options = ApproachOptions(start_m=40.0, end_m=10.0, speed_kmh=50.0, fps=5.0)
        build_far_approach(image, folder, {"made_up": "test"}, options, seed)
        out.append(folder)
    return out
