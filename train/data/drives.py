"""Recorded drives (DESIGN.md format) simulated from validation stills.

A virtual camera crops the still and moves towards a target (the stop sign, or a look-alike for
a confuser drive): the crop shrinks linearly in time, as the field of view at the sign's depth
does when distance falls linearly, while it pans onto the target with smoothed shake, exposure
drift and one brief occluder. Every frame is an exact affine map of the still, so the ground-truth
boxes are exact. Stop boxes covered more than half by the occluder are left out of that frame's
labels (a detector cannot see them); boxes leaving the frame are clipped, or dropped under 2 px.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.train.data import layout
from stopsign.train.data.labels import parse_label_text, to_array
from stopsign.train.data.layout import DatasetError
from stopsign.train.data.synth import effects

RECORDER_VERSION = "stopsign.train.data.drives/1"
KINDS = ("approach", "confuser", "night")
START_MONOTONIC_NS = 1_000_000_000_000  # arbitrary but fixed, so drives are reproducible


@dataclass
class DriveOptions:
    """Frame count, rate and size of every drive; ``hfov_deg`` sets the pinhole intrinsics."""

    frames: int = 90
    fps: float = 30.0
    width: int = 640
    height: int = 480
    hfov_deg: float = 60.0
    final_fill: float = 0.35  # target's share of the frame width at the end of the approach
    fourcc: str = "mp4v"

    def intrinsics(self) -> dict[str, float]:
        fx = self.width / (2 * math.tan(math.radians(self.hfov_deg) / 2))
        return {"fx": fx, "fy": fx, "cx": self.width / 2, "cy": self.height / 2}


def _camera_path(
    img_w: int, img_h: int, target: np.ndarray, opts: DriveOptions, rng: np.random.Generator
) -> np.ndarray:
    """(frames, 3) crop x0, y0, crop width in still pixels for each frame."""
    aspect = opts.height / opts.width
    w0 = min(img_w, img_h / aspect)
    tw = max(target[2] - target[0], 4.0)
    w1 = float(np.clip(tw / opts.final_fill, tw * 1.2, w0))
    t = np.linspace(0, 1, opts.frames)
    width = w0 + (w1 - w0) * t
    start = np.array([img_w / 2, img_h / 2])
    end = np.array([(target[0] + target[2]) / 2, (target[1] + target[3]) / 2])
    # Keep the target off-centre (right of and above centre), where a roadside sign sits.
    end = end - np.array([0.15, -0.05]) * w1
    ease = t**1.5
    centre = start[None] + (end - start)[None] * ease[:, None]
    shake = np.cumsum(rng.normal(0, 1, (opts.frames, 2)), 0)
    shake = cv2.GaussianBlur(shake.astype(np.float32), (1, 9), 0) if opts.frames >= 9 else shake
    shake = shake - shake.mean(0)
    centre = centre + shake * 0.004 * width[:, None]
    x0 = centre[:, 0] - width / 2
    y0 = centre[:, 1] - width * aspect / 2
    return np.stack([x0, y0, width], 1)


def _map_boxes(boxes: np.ndarray, x0: float, y0: float, scale: float, opts: DriveOptions) -> np.ndarray:
    """Still-pixel boxes -> frame-pixel boxes, clipped; drops boxes under 2 px or < 30 % visible."""
    if not len(boxes):
        return boxes.reshape(0, 4)
    mapped = (boxes - np.array([x0, y0, x0, y0])) * scale
    clipped = mapped.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, opts.width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, opts.height)
    area = (mapped[:, 2] - mapped[:, 0]) * (mapped[:, 3] - mapped[:, 1])
    vis = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (clipped[:, 2] - clipped[:, 0] >= 2) & (clipped[:, 3] - clipped[:, 1] >= 2) & (vis >= 0.3 * area)
    return clipped[keep]


def _covered_fraction(box: np.ndarray, rect: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(box[2], rect[2]) - max(box[0], rect[0]))
    iy = max(0.0, min(box[3], rect[3]) - max(box[1], rect[1]))
    return ix * iy / max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)


def build_drive(
    still: np.ndarray,
    target_xyxy: np.ndarray,
    stop_xyxy: np.ndarray,
    out_dir: Path,
    kind: str,
    source: dict[str, str],
    opts: DriveOptions,
    seed: int,
) -> int:
    """Write one drive folder from ``still`` (h, w, 3) BGR; returns the number of labelled boxes.

    ``target_xyxy`` (4,) still pixels: what the camera approaches. ``stop_xyxy`` (n, 4): the stop
    signs to label (empty for a confuser drive).
    """
    if kind not in KINDS:
        raise DatasetError(f"unknown drive kind {kind!r}; expected one of {KINDS}")
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=False)
    img_h, img_w = still.shape[:2]
    path = _camera_path(img_w, img_h, np.asarray(target_xyxy, np.float64), opts, rng)
    video = out_dir / ("video.mp4" if opts.fourcc == "mp4v" else "video.mkv")
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*opts.fourcc), opts.fps, (opts.width, opts.height)
    )
    if not writer.isOpened():
        raise DatasetError(f"{video}: OpenCV cannot open a {opts.fourcc} video writer")
    occ_start = int(rng.integers(int(opts.frames * 0.35), int(opts.frames * 0.65)))
    occ_len = int(rng.integers(3, 7))
    gain_phase = rng.uniform(0, 2 * np.pi)
    noise = effects.NoiseTile(seed, side=max(opts.width, opts.height) + 1)
    night_rng_seed = int(rng.integers(1 << 31))
    frames_lines, label_lines = [], []
    n_boxes = 0
    try:
        for i, (x0, y0, width) in enumerate(path):
            scale = opts.width / width
            affine = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
            frame = cv2.warpAffine(
                still,
                affine,
                (opts.width, opts.height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT,
            )
            boxes = _map_boxes(np.asarray(stop_xyxy, np.float64).reshape(-1, 4), x0, y0, scale, opts)
            gain = 1.0 + 0.2 * math.sin(gain_phase + 2 * math.pi * i / max(opts.frames, 1))
            if kind == "night":
                frame_rng = np.random.default_rng([night_rng_seed, 0])  # same darkening every frame
                frame = effects.exposure(effects.low_light(frame, frame_rng), 0.6)
                frame = effects.glare(frame, frame_rng)
                frame = noise.apply(frame, rng, 6.0)
            frame = effects.exposure(frame, gain)
            if occ_start <= i < occ_start + occ_len:
                # A pole or passing vehicle sweeping across the target, left to right.
                tgt = _map_boxes(np.asarray(target_xyxy, np.float64)[None], x0, y0, scale, opts)
                cx = (tgt[0, 0] + tgt[0, 2]) / 2 if len(tgt) else opts.width / 2
                bar_w = max(20.0, (tgt[0, 2] - tgt[0, 0]) * 0.9 if len(tgt) else 40.0)
                left = cx - bar_w + (i - occ_start) / max(occ_len - 1, 1) * bar_w
                rect = (left, 0.0, left + bar_w, float(opts.height))
                cv2.rectangle(frame, (int(rect[0]), 0), (int(rect[2]), opts.height), (25, 25, 30), -1)
                boxes = np.array([b for b in boxes if _covered_fraction(b, rect) <= 0.5]).reshape(-1, 4)
            writer.write(frame)
            pts = round(i * 1e9 / opts.fps)
            jitter = int(rng.integers(0, 2_000_000))  # capture-time noise up to 2 ms
            frames_lines.append(
                json.dumps({"index": i, "pts_ns": pts, "monotonic_ns": START_MONOTONIC_NS + pts + jitter})
            )
            label_lines.append(
                json.dumps(
                    {
                        "index": i,
                        "boxes": [[round(float(v), 2) for v in b] for b in boxes],
                        "class_ids": [0] * len(boxes),
                    }
                )
            )
            n_boxes += len(boxes)
    finally:
        writer.release()
    atomic_write_text(out_dir / "frames.jsonl", "\n".join(frames_lines) + "\n")
    atomic_write_text(out_dir / "labels.jsonl", "\n".join(label_lines) + "\n")
    meta = {
        "camera": "synthetic-from-still",
        "width": opts.width,
        "height": opts.height,
        "fps": opts.fps,
        "intrinsics": opts.intrinsics(),
        "recorder_version": RECORDER_VERSION,
        "source": {**source, "kind": kind, "seed": seed},
    }
    atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return n_boxes


def load_still(dataset: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A canonical dataset's image (BGR) and its stop boxes as (n, 4) float64 xyxy pixels."""
    image_path = Path(dataset) / layout.IMAGES / name
    still = cv2.imread(str(image_path))
    if still is None:
        raise DatasetError(f"{image_path}: cannot be decoded")
    h, w = still.shape[:2]
    label = layout.label_path_for(image_path)
    _, norm = (
        to_array(parse_label_text(label.read_text(), 1)[0]) if label.is_file() else (None, np.zeros((0, 4)))
    )
    return still, layout.yolo_to_xyxy(norm, w, h).astype(np.float64)


def _largest_stop_width(image: Path) -> float:
    """Widest stop box of ``image`` as a fraction of the image width (0 when none)."""
    label = layout.label_path_for(image)
    if not label.is_file():
        return 0.0
    _, boxes = to_array(parse_label_text(label.read_text(), 1)[0])
    return float(boxes[:, 2].max()) if len(boxes) else 0.0


def drives_from_dataset(
    dataset: Path,
    out: Path,
    n_approach: int = 3,
    n_confuser: int = 2,
    n_night: int = 1,
    seed: int = 0,
    opts: DriveOptions | None = None,
) -> list[Path]:
    """Build drives from the VALIDATION images of a canonical dataset (never from training images).

    Approach and night drives use val images with a stop sign (the largest sign is the target);
    confuser drives use val images whose role is ``confuser`` and zoom on a look-alike.
    """
    opts = opts or DriveOptions()
    dataset, out = Path(dataset), Path(out)
    val = [Path(e).name for e in layout.read_list(dataset, layout.VAL_LIST)]
    if not val:
        raise DatasetError(f"{dataset / layout.VAL_LIST}: empty or missing; run 'edge-data split' first")
    records = layout.read_sources(dataset)
    stops = sorted(n for n in val if n in records and records[n].role == "stop")
    # A sign that already fills the still leaves no room to approach: prefer small ones.
    small = [n for n in stops if _largest_stop_width(dataset / layout.IMAGES / n) < 0.2]
    if len(small) >= n_approach + n_night:
        stops = small
    confusers = sorted(
        n for n in val if n in records and records[n].role == "confuser" and records[n].confusers
    )
    rng = np.random.default_rng(seed)
    if n_approach + n_night > len(stops):
        raise DatasetError(f"{dataset}: {len(stops)} val stop images, need {n_approach + n_night}")
    if n_confuser > len(confusers):
        raise DatasetError(f"{dataset}: {len(confusers)} val confuser images, need {n_confuser}")
    stop_pick = rng.choice(len(stops), n_approach + n_night, replace=False).tolist()
    conf_pick = rng.choice(len(confusers), n_confuser, replace=False).tolist()
    plan = [("approach", stops[i]) for i in stop_pick[:n_approach]]
    plan += [("night", stops[i]) for i in stop_pick[n_approach:]]
    plan += [("confuser", confusers[i]) for i in conf_pick]
    written: list[Path] = []
    counters = dict.fromkeys(KINDS, 0)
    for kind, name in tqdm(plan, desc="drives", unit="drive", leave=False):
        still, stop_xyxy = load_still(dataset, name)
        h, w = still.shape[:2]
        if kind == "confuser":
            conf = records[name].confusers[int(rng.integers(len(records[name].confusers)))]
            target = np.array(conf["xyxy"], np.float64) * [w, h, w, h]
            source_extra = {"target": str(conf["name"])}
        else:
            areas = (stop_xyxy[:, 2] - stop_xyxy[:, 0]) * (stop_xyxy[:, 3] - stop_xyxy[:, 1])
            target = stop_xyxy[int(np.argmax(areas))]
            source_extra = {"target": "stop_sign"}
        rec = records[name]
        folder = out / f"{kind}_{counters[kind]:02d}"
        counters[kind] += 1
        source = {"dataset": str(dataset), "image": name, "original": rec.original, "licence": rec.licence}
        build_drive(
            still, target, stop_xyxy, folder, kind, {**source, **source_extra}, opts, seed + len(written)
        )
        written.append(folder)
    return written
