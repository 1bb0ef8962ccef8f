"""Far stop signs composited into real car frames, where a forward camera would see them.

No permissively licensed real data with many small stop signs exists, so this makes it: a
synthetic stop sign (the generator's sprites, with its lighting, tilt and wear) is placed in a real
dash-camera frame that has no stop sign (GTSDB's 1360x800 frames), on a post at the roadside, at a
distance and lateral offset drawn in metres and projected through a pinhole camera:

* the camera looks along the road from ``camera_height_m`` (1.2-1.6 m); its horizon row and focal
  length are drawn per frame (GTSDB publishes no calibration: horizon at 42-52 % of the height,
  horizontal field of view 45-65 degrees);
* the sign face (0.75 m) sits on a 2.1 m post (bottom edge), 2.5-7 m right of the camera (a
  quarter of the time 3-8 m left), 5-60 m ahead (log-uniform, so far signs are common);
* so its size, height above the horizon and post length all follow from the distance.

The camera's own look at that scale: the sign and post are drawn at 4x into an upscaled crop of the
frame and area-averaged back down (a sensor integrates light over each pixel), then blurred
slightly and given the frame's noise level. Frames listed in a data folder's ``val.txt`` are never
used, so the committed validation split stays as it is; :func:`split_backgrounds` divides the
remaining frames into disjoint training and far-sign-validation sets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.train.data import layout
from stopsign.train.data.layout import DatasetError, SourceRecord
from stopsign.train.data.synth.scene import place_sprite
from stopsign.train.data.synth.signs import Sprite, build_library

SIGN_M = 0.75  # height of the sign face
POST_M = 2.1  # ground to the bottom of the sign
MIN_EXTENT_PX = 6.0  # smaller signs are not drawn (nothing could find them)
SUPERSAMPLE = 4


@dataclass(frozen=True)
class RoadCamera:
    """A forward pinhole camera: focal length and principal point in pixels, mounting height in metres."""

    focal_px: float
    cx: float
    horizon_y: float
    height_m: float

    @classmethod
    def draw(cls, frame_hw: tuple[int, int], rng: np.random.Generator) -> RoadCamera:
        height, width = frame_hw
        fov = math.radians(rng.uniform(45, 65))
        return cls(
            focal_px=width / 2 / math.tan(fov / 2),
            cx=width / 2 + rng.normal(0, width * 0.02),
            horizon_y=height * rng.uniform(0.42, 0.52),
            height_m=rng.uniform(1.2, 1.6),
        )

    def project(self, distance_m: float, lateral_m: float) -> tuple[float, float, float, float]:
        """Sign at (lateral, distance) -> (centre x, centre y, face height px, post foot y) in the frame."""
        scale = self.focal_px / distance_m
        centre_height = POST_M + SIGN_M / 2 - self.height_m  # above the camera
        return (
            self.cx + lateral_m * scale,
            self.horizon_y - centre_height * scale,
            SIGN_M * scale,
            self.horizon_y + self.height_m * scale,
        )


@dataclass(frozen=True)
class Placement:
    """Where a sign goes: metres from the camera (``lateral_m`` > 0: right of it)."""

    distance_m: float
    lateral_m: float

    @classmethod
    def draw(cls, rng: np.random.Generator, near_m: float = 5.0, far_m: float = 60.0) -> Placement:
        distance = float(np.exp(rng.uniform(np.log(near_m), np.log(far_m))))
        lateral = rng.uniform(2.5, 7.0) if rng.random() < 0.75 else -rng.uniform(3.0, 8.0)
        return cls(distance, float(lateral))


def composite_sign(
    frame: np.ndarray, sprite: Sprite, camera: RoadCamera, placement: Placement, rng: np.random.Generator
) -> np.ndarray | None:
    """Draw ``sprite`` on its post into ``frame`` (in place); its (4,) xyxy box, or None when it
    would be smaller than :data:`MIN_EXTENT_PX` or not wholly inside the frame."""
    height, width = frame.shape[:2]
    cx, cy, extent, foot_y = camera.project(placement.distance_m, placement.lateral_m)
    if extent < MIN_EXTENT_PX:
        return None
    half = extent * 0.6
    if cx - half < 0 or cx + half > width or cy - half < 0 or cy + half > height:
        return None
    # The crop around sign and post, worked on at SUPERSAMPLE x and area-averaged back.
    x0, x1 = max(0, int(cx - extent)), min(width, math.ceil(cx + extent))
    y0, y1 = max(0, int(cy - extent)), min(height, math.ceil(max(foot_y, cy + extent)) + 1)
    crop = frame[y0:y1, x0:x1]
    big = cv2.resize(crop, ((x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE), interpolation=cv2.INTER_LINEAR)
    local = ((cx - x0) * SUPERSAMPLE, (cy - y0) * SUPERSAMPLE)
    tilt = float(rng.uniform(-0.35, 0.35))
    box = place_sprite(big, sprite, rng, extent * SUPERSAMPLE, local, tilt)
    grey = float(rng.uniform(80, 160))
    post_w = max(1, round(extent * SUPERSAMPLE * 0.07))
    post_x = round((box[0] + box[2]) / 2)
    cv2.line(
        big, (post_x, int(box[3])), (post_x, int((foot_y - y0) * SUPERSAMPLE)), (grey, grey, grey), post_w
    )
    small = cv2.resize(big, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), float(rng.uniform(0.3, 0.8)))
    noise = rng.normal(0, _noise_sigma(crop), small.shape)
    frame[y0:y1, x0:x1] = np.clip(small + noise, 0, 255).astype(np.uint8)
    return (box / SUPERSAMPLE + np.array([x0, y0, x0, y0], np.float32)).astype(np.float32)


def _noise_sigma(crop: np.ndarray) -> float:
    """The frame's own pixel noise, estimated from the high-pass residual of the crop."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    if min(grey.shape) < 3:
        return 1.0
    residual = grey - cv2.blur(grey, (3, 3))
    return float(np.clip(1.4826 * np.median(np.abs(residual)), 0.5, 6.0))


def composite_frame(
    frame: np.ndarray, stop_sprites: list[Sprite], rng: np.random.Generator, max_signs: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``frame`` with 1..``max_signs`` far signs; returns (image, (n, 4) xyxy boxes)."""
    image = frame.copy()
    camera = RoadCamera.draw(image.shape[:2], rng)
    boxes: list[np.ndarray] = []
    wanted = int(rng.integers(1, max_signs + 1))
    for _ in range(wanted * 6):  # a few tries per sign: some placements fall off the frame
        if len(boxes) == wanted:
            break
        placement = Placement.draw(rng)
        sprite = stop_sprites[int(rng.integers(len(stop_sprites)))]
        trial = image.copy()
        box = composite_sign(trial, sprite, camera, placement, rng)
        if box is None or any(_overlap(box, other) for other in boxes):
            continue
        image, boxes = trial, [*boxes, box]
    return image, np.array(boxes, np.float32).reshape(-1, 4)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def split_backgrounds(names: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Frames -> (training, far-sign validation), disjoint and stable (by a hash of each name)."""
    train: list[str] = []
    val: list[str] = []
    for name in sorted(names):
        bucket = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (val if bucket < val_fraction else train).append(name)
    return train, val


FAR_SOURCE = "far_composite"
BACKGROUND_SOURCES = ("gtsdb",)  # car frames at full resolution; the other sets are close-ups or small
JPEG_QUALITY = 92


def background_frames(real: Path, part: str, val_fraction: float = 0.2) -> list[str]:
    """The stop-free car frames of ``real`` outside its ``val.txt``, in the ``part`` ("train" or
    "val") share of :func:`split_backgrounds`: image names, sorted."""
    records = layout.read_sources(real)
    held_out = {Path(entry).name for entry in layout.read_list(real, layout.VAL_LIST)}
    frames = [
        name
        for name, record in records.items()
        if record.source in BACKGROUND_SOURCES and record.n_stop == 0 and name not in held_out
    ]
    if not frames:
        raise DatasetError(f"{real}: no stop-free {'/'.join(BACKGROUND_SOURCES)} frames outside val.txt")
    train_frames, val_frames = split_backgrounds(frames, val_fraction)
    return train_frames if part == "train" else val_frames


def generate_far_signs(
    real: Path,
    out: Path,
    part: str,
    per_frame: int = 3,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> dict[str, int]:
    """Composite far signs into the stop-free frames of ``real`` (a canonical data folder) -> ``out``.

    ``part``: "train" (the frames outside the far-validation share; listed in ``out/train.txt``)
    or "val" (the others; listed in ``out/val.txt``). Frames in ``real``'s own ``val.txt`` are
    never used. ``per_frame`` composites per background frame, each with 1-2 signs.
    """
    if part not in ("train", "val"):
        raise DatasetError(f"part must be train or val, got {part!r}")
    if per_frame < 1:
        raise DatasetError(f"--per-frame must be >= 1, got {per_frame}")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: output folder exists and is not empty; choose a new folder")
    records = layout.read_sources(real)
    chosen = background_frames(real, part, val_fraction)
    sprites = build_library()["stop_sign"]
    (out / layout.IMAGES).mkdir(parents=True)
    (out / layout.LABELS).mkdir()
    written: list[SourceRecord] = []
    signs = 0
    for index, name in enumerate(tqdm(chosen, desc=f"far signs ({part})", unit="frame", leave=False)):
        frame = cv2.imread(str(real / layout.IMAGES / name), cv2.IMREAD_COLOR)
        if frame is None:
            raise DatasetError(f"{real / layout.IMAGES / name}: unreadable image")
        for copy in range(per_frame):
            rng = np.random.default_rng([seed, index, copy])
            image, boxes = composite_frame(frame, sprites, rng)
            if not len(boxes):
                continue
            stem = f"far_{part}_s{seed}_{Path(name).stem}_{copy}"
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise DatasetError(f"JPEG encoding failed for {stem}")
            (out / layout.IMAGES / f"{stem}.jpg").write_bytes(jpeg.tobytes())
            height, width = image.shape[:2]
            labels = layout.format_label_lines(layout.xyxy_to_yolo(boxes, width, height))
            (out / layout.LABELS / f"{stem}.txt").write_text(labels)
            base = records[name]
            written.append(
                SourceRecord(
                    image=f"{stem}.jpg",
                    source=FAR_SOURCE,
                    original=f"{base.original} + synthetic far stop sign(s), seed={seed}",
                    licence=f"{base.licence}; synthetic signs: Apache-2.0 (this project)",
                    role="stop",
                    n_stop=len(boxes),
                    confusers=base.confusers,
                )
            )
            signs += len(boxes)
    layout.write_sources(out, written)
    entries = [f"{layout.IMAGES}/{r.image}" for r in written]
    layout.write_list(out, layout.TRAIN_LIST, entries if part == "train" else [])
    layout.write_list(out, layout.VAL_LIST, entries if part == "val" else [])
    layout.write_data_yaml(out)
    return {"frames": len(chosen), "images": len(written), "signs": signs}
