"""Run the detector (with tiles) and the tracker over one source, keeping what mining needs.

A source is anything ``edge-detect --source`` accepts (a drive folder, a video, an image folder,
and whatever scheme the source factory learns later, such as bags): it is opened through
:func:`stopsign.edge.sources.factory.make_source` in ordered (replay) mode, so no frame is
dropped. Per frame the whole frame and its tiles go to the model in one batch; the whole frame's
and the tiles' boxes are kept apart (for the disagreement signal) and merged as ``edge-detect``
merges them; the tracker runs on the merged boxes exactly as in ``edge-detect``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.edge.backends.base import Backend
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.replay.runner import tracker_config_for
from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import make_source
from stopsign.edge.sources.uri import parse_source_uri
from stopsign.edge.tracking import CameraIntrinsics, Tracker
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame
from stopsign.edge.vision.letterbox import compute_transform
from stopsign.edge.vision.postprocess import box_iou, decode_yolov5
from stopsign.edge.vision.preprocess import FrameBatcher
from stopsign.edge.vision.tiles import TileConfig, merge, tile_to_frame
from stopsign.train.data.layout import DatasetError, safe_name
from stopsign.train.data.mine.records import FrameRecord, Row, TrackSeen

READ_TIMEOUT_S = 5.0
TRACKER_CONF = 0.25  # what edge-detect hands the tracker (its --conf default)


@dataclass
class ModelRun:
    """A loaded backend and its spec (``second``: the same for a model to compare against)."""

    backend: Backend
    spec: ModelSpec


@dataclass
class SourceScan:
    """A scanned source: its URI, a stable short ``drive`` name, the frames, and true boxes per
    frame index when the source is a drive folder with ``labels.jsonl``."""

    source: str
    drive: str
    still: bool
    frames: list[FrameRecord] = field(default_factory=list)
    labels: dict[int, list[list[float]]] | None = None
    meta: dict = field(default_factory=dict)


def drive_name(uri: str) -> str:
    """A short name for a source, unique per URI: its last path part + 6 hex of the URI's SHA-1."""
    base = Path(uri.split("://", 1)[-1].rstrip("/")).name or "source"
    return f"{safe_name(base)[:40]}-{hashlib.sha1(uri.encode()).hexdigest()[:6]}"


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of a BGR image: 9x8 grey thumbnail, one bit per horizontal step."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _rows(detections: Detections) -> list[Row]:
    return [
        [round(float(v), 2) for v in box] + [round(float(s), 4)]
        for box, s in zip(detections.xyxy, detections.score)
    ]


def _drive_folder(uri: str) -> Path | None:
    parsed = parse_source_uri(uri)
    return Path(parsed.target) if parsed.kind == "drive" else None


def read_drive_labels(folder: Path) -> dict[int, list[list[float]]] | None:
    """Frame index -> true boxes from a drive's ``labels.jsonl``; None when it has none."""
    path = folder / "labels.jsonl"
    if not path.is_file():
        return None
    out: dict[int, list[list[float]]] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out[int(record["index"])] = [[float(v) for v in box] for box in record.get("boxes", [])]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}:{line_no}: expected {{'index', 'boxes'}} ({exc})") from None
    return out


def read_meta(uri: str) -> dict:
    """A drive folder's ``meta.json`` ({} for other sources, or a drive without one)."""
    folder = _drive_folder(uri)
    if folder is None or not (folder / "meta.json").is_file():
        return {}
    try:
        return json.loads((folder / "meta.json").read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{folder / 'meta.json'}: not JSON ({exc})") from None


def principal_point(meta: dict) -> tuple[float, float] | None:
    """The camera's (cx, cy) from a drive's meta, for the tile band (as ``edge-detect``); None if unknown."""
    intrinsics = CameraIntrinsics.from_meta(meta) if meta else None
    if intrinsics is None or intrinsics.cx is None or intrinsics.cy is None:
        return None
    return float(intrinsics.cx), float(intrinsics.cy)


def iterate_frames(uri: str) -> Iterator[Frame]:
    """Every frame of ``uri`` in order (replay mode: nothing dropped); raises SourceError."""
    source = make_source(uri, SourceOptions(live=False), lambda *_: None)
    source.open()
    try:
        while True:
            frame = source.read(READ_TIMEOUT_S)
            if frame is not None:
                yield frame
            elif source.eos:
                return
    finally:
        source.close()


class FrameDetector:
    """The whole frame and its tiles in one batch -> (merged, whole, tiles) rows in frame pixels."""

    def __init__(
        self, run: ModelRun, tiles: TileConfig, still: bool, centre: tuple[float, float] | None, conf: float
    ) -> None:
        self.run, self.conf = run, conf
        self.batcher = FrameBatcher(run.spec, tiles, still, centre, images=run.backend.image_input)

    def __call__(self, image: np.ndarray) -> tuple[list[Row], list[Row], list[Row] | None]:
        spec, backend = self.run.spec, self.run.backend
        batch = self.batcher(image)
        raw = backend.infer_images(batch) if self.batcher.images else backend.infer(batch)
        iou, done = spec.nms_iou, backend.output_suppressed
        frame_hw = image.shape[:2]
        whole_tf, _ = compute_transform(frame_hw, spec.input_size, resize=spec.resize)
        whole = decode_yolov5(raw[0], self.conf, iou, whole_tf, nms_done=done)
        parts = []
        for index, tile in enumerate(self.batcher.tiles, start=1):
            tile_tf, _ = compute_transform((tile.h, tile.w), spec.input_size, resize=spec.resize)
            found = decode_yolov5(raw[index], self.conf, iou, tile_tf, nms_done=done)
            parts.append(tile_to_frame(found, tile, frame_hw))
        tiles = merge(parts, iou) if self.batcher.tiles else None
        merged = merge([whole, *parts], iou)
        return _rows(merged), _rows(whole), (_rows(tiles) if tiles is not None else None)


def _track_snapshot(tracker: Tracker, index: int, detections: Detections) -> list[TrackSeen]:
    out = []
    for track in tracker.tracks:
        box = [round(float(v), 2) for v in track.box]
        hit = track.last_seen_frame == index
        det = None
        if hit and len(detections):
            ious = box_iou(np.asarray([track.box], np.float32), detections.xyxy)[0]
            det = [round(float(v), 2) for v in detections.xyxy[int(np.argmax(ious))]]
        out.append(TrackSeen(track.track_id, box, round(float(track.score), 4), hit, track.confirmed, det))
    return out


def scan_source(
    uri: str,
    main: ModelRun,
    tiles: TileConfig,
    second: ModelRun | None = None,
    conf: float = 0.05,
    progress: bool = True,
    on_frame: Callable[[Frame], None] | None = None,
) -> SourceScan:
    """Detector (+ tiles, + an optional second model) and tracker over every frame of ``uri``."""
    still = parse_source_uri(uri).kind == "images"
    folder = _drive_folder(uri)
    meta = read_meta(uri)
    centre = principal_point(meta)
    detect = FrameDetector(main, tiles, still, centre, conf)
    compare = FrameDetector(second, tiles, still, centre, conf) if second is not None else None
    tracker = None if still else Tracker(tracker_config_for(main.spec, meta, None))
    scan = SourceScan(uri, drive_name(uri), still, meta=meta)
    scan.labels = read_drive_labels(folder) if folder is not None else None
    bar = tqdm(desc=f"scan {scan.drive}", unit="frame", disable=not progress, leave=False)
    for frame in iterate_frames(uri):
        merged, whole, tile_rows = detect(frame.image)
        second_rows = compare(frame.image)[0] if compare is not None else None
        stamp = frame.pts_ns if frame.pts_ns != NO_TIMESTAMP else frame.monotonic_ns
        tracks: list[TrackSeen] = []
        if tracker is not None:
            xyxy = np.asarray([r[:4] for r in merged if r[4] >= TRACKER_CONF], np.float32).reshape(-1, 4)
            score = np.asarray([r[4] for r in merged if r[4] >= TRACKER_CONF], np.float32)
            detections = Detections(xyxy, score, np.zeros(len(score), np.int64))
            if frame.gap_ns:
                tracker.bridge_gap(frame.gap_ns, frame.index, stamp)
            tracker.update(detections, frame.index, stamp)
            tracks = _track_snapshot(tracker, frame.index, detections)
        height, width = frame.image.shape[:2]
        scan.frames.append(
            FrameRecord(
                frame.index,
                int(stamp),
                merged,
                whole,
                tile_rows,
                second_rows,
                tracks,
                dhash(frame.image),
                width,
                height,
            )
        )
        if on_frame is not None:
            on_frame(frame)
        bar.update(1)
    bar.close()
    if not scan.frames:
        raise DatasetError(f"{uri}: the source delivered no frame")
    return scan
