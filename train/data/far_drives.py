"""Far-approach drives: a stop sign composited into a real car frame, approached from far away.

The drives of :mod:`stopsign.train.data.drives` zoom into photos whose signs are already large, so
they cannot show how early a far sign is found. Here the background is a real stop-free car frame
(GTSDB, 1360x800, from the far-sign validation share of :func:`split_backgrounds`, never trained
on and never in the committed ``val.txt``), and the sign of :mod:`...synth.far_signs` stands at the
roadside and is approached at a constant speed from ``start_m`` to ``end_m``: its size, height and
lateral position follow the pinhole camera frame by frame. The background is zoomed gently about
the vanishing point to give the scene forward motion (it is one photo, so it has no parallax).

Every label line carries the sign's true distance (``distance_m``), and ``meta.json`` the
camera's intrinsics and the approach (``far_approach``), so the first event's distance is exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.train.data import layout
from stopsign.train.data.drives import RECORDER_VERSION, START_MONOTONIC_NS
from stopsign.train.data.layout import DatasetError
from stopsign.train.data.synth.far_signs import Placement, RoadCamera, background_frames, composite_sign
from stopsign.train.data.synth.signs import build_library


@dataclass(frozen=True)
class ApproachOptions:
    """The approach: distances in metres, speed, frame rate; ``zoom`` of the background over the drive."""

    start_m: float = 70.0
    end_m: float = 10.0
    speed_kmh: float = 50.0
    fps: float = 15.0
    zoom: float = 1.15

    @property
    def frames(self) -> int:
        return int((self.start_m - self.end_m) / (self.speed_kmh / 3.6) * self.fps) + 1

    def distance_at(self, index: int) -> float:
        return self.start_m - self.speed_kmh / 3.6 * index / self.fps


def build_far_approach(
    frame: np.ndarray, out_dir: Path, source: dict[str, str], options: ApproachOptions, seed: int
) -> int:
    """Write one far-approach drive folder from a stop-free car ``frame``; returns its frame count."""
    rng = np.random.default_rng(seed)
    camera = RoadCamera.draw(frame.shape[:2], rng)
    lateral = Placement.draw(rng).lateral_m
    sprites = build_library()["stop_sign"]
    sprite = sprites[int(rng.integers(len(sprites)))]
    look_seed = int(rng.integers(1 << 31))  # the same sign (tilt, paint, light) in every frame
    height, width = frame.shape[:2]
    out_dir.mkdir(parents=True, exist_ok=False)
    video = out_dir / "video.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), options.fps, (width, height))
    if not writer.isOpened():
        raise DatasetError(f"{video}: OpenCV cannot open an mp4v video writer")
    frame_lines, label_lines = [], []
    try:
        for index in range(options.frames):
            progress = index / max(options.frames - 1, 1)
            scale = 1.0 + (options.zoom - 1.0) * progress
            affine = np.array(
                [[scale, 0, camera.cx * (1 - scale)], [0, scale, camera.horizon_y * (1 - scale)]], np.float64
            )
            image = cv2.warpAffine(frame, affine, (width, height), flags=cv2.INTER_LINEAR)
            distance = options.distance_at(index)
            box = composite_sign(
                image, sprite, camera, Placement(distance, lateral), np.random.default_rng(look_seed)
            )
            writer.write(image)
            pts = round(index * 1e9 / options.fps)
            frame_lines.append(
                json.dumps({"index": index, "pts_ns": pts, "monotonic_ns": START_MONOTONIC_NS + pts})
            )
            boxes = [] if box is None else [[round(float(v), 2) for v in box]]
            label_lines.append(
                json.dumps(
                    {
                        "index": index,
                        "boxes": boxes,
                        "class_ids": [0] * len(boxes),
                        "distance_m": round(distance, 2),
                    }
                )
            )
    finally:
        writer.release()
    atomic_write_text(out_dir / "frames.jsonl", "\n".join(frame_lines) + "\n")
    atomic_write_text(out_dir / "labels.jsonl", "\n".join(label_lines) + "\n")
    meta = {
        "camera": "synthetic-far-approach",
        "width": width,
        "height": height,
        "fps": options.fps,
        "intrinsics": {"fx": camera.focal_px, "fy": camera.focal_px, "cx": camera.cx, "cy": camera.horizon_y},
        "recorder_version": RECORDER_VERSION,
        "far_approach": {
            "start_m": options.start_m,
            "end_m": options.end_m,
            "speed_kmh": options.speed_kmh,
            "lateral_m": round(lateral, 2),
            "camera_height_m": round(camera.height_m, 3),
        },
        "source": {**source, "kind": "far_approach", "seed": seed},
    }
    atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return options.frames


def far_drives_from_dataset(
    real: Path,
    out: Path,
    count: int,
    seed: int = 0,
    options: ApproachOptions | None = None,
    part: str = "val",
) -> list[Path]:
    """``count`` far-approach drives on the far-sign validation share of ``real``'s car frames
    (``part="train"``: on the training share, for drives to mine and train on, never evaluated)."""
    options = options or ApproachOptions()
    if count < 1:
        raise DatasetError(f"--n must be >= 1, got {count}")
    records = layout.read_sources(real)
    val_frames = background_frames(real, part)
    if len(val_frames) < count:
        raise DatasetError(f"{real}: {len(val_frames)} far-{part} frames, need {count}")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(val_frames), count, replace=False).tolist())
    written = []
    for number, pick in enumerate(tqdm(picked, desc="far drives", unit="drive", leave=False)):
        name = val_frames[pick]
        frame = cv2.imread(str(real / layout.IMAGES / name), cv2.IMREAD_COLOR)
        if frame is None:
            raise DatasetError(f"{real / layout.IMAGES / name}: unreadable image")
        record = records[name]
        folder = out / f"far_approach_{number:02d}"
        source = {"dataset": str(real), "image": name, "original": record.original, "licence": record.licence}
        build_far_approach(frame, folder, source, options, seed * 1000 + number)
        written.append(folder)
    return written
