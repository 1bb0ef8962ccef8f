"""Deterministic replay of a recorded drive: every frame, the recorded clock, no wall time.

The same stages as ``edge-detect`` (the pipeline's FrameBatcher, a registered backend, the shared
decode + NMS, the tracker), fed from the decoded video in order. ``realtime=True`` instead paces
the frames at their recorded times and, like a live camera, skips the frames that arrived while
the previous one was being processed - what the car would have seen on this hardware.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stopsign.edge.backends.base import Backend, BackendOptions, resolve_backend
from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.replay.drive import open_drive, read_frames
from stopsign.edge.sources.uri import is_bag_path
from stopsign.edge.tracking import CameraIntrinsics, Tracker, TrackerConfig
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.preprocess import FrameBatcher
from stopsign.edge.vision.tiles import TileConfig


@dataclass
class FrameRecord:
    frame: int
    timestamp_ns: int
    detections: Detections
    tracks: list[dict[str, Any]]  # confirmed tracks on this frame: id, box, score


@dataclass
class ReplayResult:
    drive: Path
    model_sha256: str
    spec: ModelSpec
    frames: list[FrameRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # frames dropped in realtime mode
    # Recorded time (ns) of every frame of the drive, those skipped in realtime mode too.
    timestamps: list[int] = field(default_factory=list)
    # What ran: the backend's name and the precision it computed in ("fp32", "fp16", "int8").
    runtime: str = ""
    precision: str = "fp32"


def tracker_config_for(
    spec: ModelSpec, meta: dict[str, Any], enter_threshold: float | None = None
) -> TrackerConfig:
    """The runtime's defaults (``TrackerConfig.from_spec``), or ``enter_threshold`` (the stay
    threshold follows it), with the focal length from meta.json."""
    changes: dict[str, object] = {"intrinsics": CameraIntrinsics.from_meta(meta)}
    if enter_threshold is not None:
        changes["enter_threshold"] = enter_threshold
    return TrackerConfig.from_spec(spec, **changes)


def load_backend(model: Path, backend: str = "auto", threads: int = 1) -> tuple[Backend, ModelSpec]:
    """Load ``model`` on ``backend``; one CPU thread by default so results do not depend on scheduling."""
    cls = resolve_backend(backend, model)
    instance = cls()
    spec = instance.load(
        model, None, BackendOptions(device="cpu" if backend != "tensorrt" else "auto", threads=threads)
    )
    return instance, spec


def replay(
    folder: str | Path,
    model: str | Path,
    backend: str = "auto",
    conf: float = 0.25,
    realtime: bool = False,
    threads: int = 1,
    tiles: TileConfig | None = None,
    enter_threshold: float | None = None,
) -> ReplayResult:
    """Replay ``folder`` (a drive folder, or a ROS bag: its one camera topic) through ``model``; see
    the module docstring.

    ``tiles``: high-resolution tiles as in ``edge-detect --tiles`` (placed with the drive's
    intrinsics). ``enter_threshold``: the tracker's, instead of the default from the ModelSpec.
    """
    if is_bag_path(Path(folder)):  # a ROS bag: its camera topic, keyed by message stamp
        from stopsign.edge.replay.bag_convert import read_bag_drive

        bag = read_bag_drive(folder)
        drive, images = bag.drive, bag.images
    else:
        drive = open_drive(folder)
        images = read_frames(drive)
    runner, spec = load_backend(Path(model), backend, threads)
    result = ReplayResult(
        Path(folder), sha256_file(model), spec, timestamps=[t for _, t in drive.timestamps], runtime=runner.name,
        precision=str(runner.describe().get("precision") or spec.precision),
    )  # fmt: skip
    intrinsics = CameraIntrinsics.from_meta(drive.meta)
    centre = None
    if intrinsics is not None and intrinsics.cx is not None and intrinsics.cy is not None:
        centre = (float(intrinsics.cx), float(intrinsics.cy))
    batcher = FrameBatcher(spec, tiles, still=False, principal_point=centre, images=runner.image_input)
    tracker = Tracker(tracker_config_for(spec, drive.meta, enter_threshold))
    start_wall = time.monotonic_ns()
    first_ns = drive.timestamps[0][1] if drive.timestamps else 0
    index = 0
    try:
        while index < len(images):
            timestamp = drive.timestamps[index][1]
            batch = batcher(images[index])
            raw = runner.infer_images(batch) if batcher.images else runner.infer(batch)
            detections = batcher.decode(raw, conf, spec.nms_iou, nms_done=runner.output_suppressed)
            events = tracker.update(detections, index, timestamp)
            result.events += [e.to_dict() for e in events]
            tracks = [
                {"id": t.track_id, "box": [round(float(v), 2) for v in t.box], "score": round(t.score, 4)}
                for t in tracker.tracks
                if t.confirmed
            ]
            result.frames.append(FrameRecord(index, timestamp, detections, tracks))
            index += 1
            if realtime:
                # Jump to the newest frame recorded by now, as a live source keeping one frame would.
                elapsed = time.monotonic_ns() - start_wall
                newest = index
                while newest + 1 < len(images) and drive.timestamps[newest + 1][1] - first_ns <= elapsed:
                    newest += 1
                result.skipped += newest - index
                index = newest
                wait = drive.timestamps[index][1] - first_ns - elapsed if index < len(images) else 0
                if wait > 0:
                    time.sleep(wait / 1e9)
        result.events += [e.to_dict() for e in tracker.flush()]
    finally:
        runner.close()
    return result
