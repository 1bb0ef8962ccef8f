"""Far signs composited into car frames: projection, drawing, held-out frames, far-approach drives."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.train.data import layout
from stopsign.train.data.far_drives import ApproachOptions, far_drives_from_dataset
from stopsign.train.data.layout import DatasetError, SourceRecord
from stopsign.train.data.synth.far_signs import (
    POST_M,
    SIGN_M,
    Placement,
    RoadCamera,
    composite_sign,
    generate_far_signs,
    split_backgrounds,
)
from stopsign.train.data.synth.signs import stop_sign

CAMERA = RoadCamera(focal_px=1000.0, cx=640.0, horizon_y=360.0, height_m=1.5)


@pytest.mark.parametrize("distance", [5.0, 10.0, 30.0, 60.0])
def test_projection_follows_the_pinhole_model(distance: float) -> None:
    cx, cy, extent, foot = CAMERA.project(distance, 4.0)
    assert extent == pytest.approx(1000 * SIGN_M / distance)
    assert cx == pytest.approx(640 + 1000 * 4.0 / distance)
    assert cy == pytest.approx(360 - 1000 * (POST_M + SIGN_M / 2 - 1.5) / distance)  # above the horizon
    assert foot == pytest.approx(360 + 1000 * 1.5 / distance)  # the post stands on the ground, below it


def test_farther_signs_are_smaller_and_nearer_the_horizon() -> None:
    near, far = CAMERA.project(10, 4), CAMERA.project(50, 4)
    assert far[2] < near[2] and abs(far[1] - 360) < abs(near[1] - 360)


@pytest.mark.parametrize(
    ("placement", "drawn"),
    [
        (Placement(20.0, 4.0), True),
        (Placement(500.0, 4.0), False),  # under the smallest size
        (Placement(3.0, 4.0), False),  # off the frame's right edge
    ],
)
def test_composite_sign_draws_only_where_it_fits(placement: Placement, drawn: bool) -> None:
    frame = np.full((720, 1280, 3), 90, np.uint8)
    before = frame.copy()
    box = composite_sign(frame, stop_sign(), CAMERA, placement, np.random.default_rng(0))
    if not drawn:
        assert box is None and np.array_equal(frame, before)
        return
    assert box is not None
    cx, cy, extent, _ = CAMERA.project(placement.distance_m, placement.lateral_m)
    assert abs((box[0] + box[2]) / 2 - cx) < 2 and abs((box[1] + box[3]) / 2 - cy) < 2
    assert 0.6 * extent < box[3] - box[1] < 1.2 * extent
    x0, y0, x1, y1 = box.astype(int)
    sign = frame[y0:y1, x0:x1].astype(int)
    assert (sign[..., 2] - sign[..., 1]).mean() > 40  # red
    changed = np.argwhere((frame != before).any(axis=2))
    assert changed[:, 1].min() >= x0 - extent - 1 and changed[:, 1].max() <= x1 + extent + 1


def test_background_split_is_disjoint_and_stable() -> None:
    names = [f"gtsdb_{i:05d}.jpg" for i in range(200)]
    train, val = split_backgrounds(names, 0.2)
    assert not set(train) & set(val) and sorted(train + val) == sorted(names)
    assert 20 <= len(val) <= 60
    assert split_backgrounds(list(reversed(names)), 0.2) == (train, val)


@pytest.fixture()
def car_frames(tmp_path: Path) -> Path:
    """A canonical folder of 30 stop-free 'gtsdb' frames, 5 in val.txt, plus one frame with a stop sign."""
    root = tmp_path / "real"
    (root / layout.IMAGES).mkdir(parents=True)
    (root / layout.LABELS).mkdir()
    rng = np.random.default_rng(0)
    records = []
    for i in range(31):
        name = f"gtsdb_{i:05d}.jpg"
        image = cv2.GaussianBlur(rng.integers(40, 200, (400, 680, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(root / layout.IMAGES / name), image)
        stop = i == 30
        (root / layout.LABELS / f"gtsdb_{i:05d}.txt").write_text("0 0.5 0.5 0.1 0.1\n" if stop else "")
        records.append(SourceRecord(name, "gtsdb", name, "free", "stop" if stop else "negative", int(stop)))
    layout.write_sources(root, records)
    layout.write_list(root, layout.VAL_LIST, [f"images/gtsdb_{i:05d}.jpg" for i in range(5)])
    layout.write_list(root, layout.TRAIN_LIST, [f"images/gtsdb_{i:05d}.jpg" for i in range(5, 31)])
    layout.write_data_yaml(root)
    return root


def used_backgrounds(folder: Path) -> set[str]:
    return {Path(r.original.split(" + ")[0]).name for r in layout.read_sources(folder).values()}


def test_generate_never_touches_val_frames_or_stop_frames(car_frames: Path, tmp_path: Path) -> None:
    train = generate_far_signs(car_frames, tmp_path / "far_train", "train", per_frame=2, seed=1)
    val = generate_far_signs(car_frames, tmp_path / "far_val", "val", per_frame=1, seed=2)
    train_bg, val_bg = used_backgrounds(tmp_path / "far_train"), used_backgrounds(tmp_path / "far_val")
    held_out = {f"gtsdb_{i:05d}.jpg" for i in range(5)} | {"gtsdb_00030.jpg"}
    assert not (train_bg | val_bg) & held_out
    assert not train_bg & val_bg
    assert train["images"] > 0 and val["images"] > 0 and train["signs"] >= train["images"]
    assert len(layout.read_list(tmp_path / "far_train", layout.TRAIN_LIST)) == train["images"]
    assert layout.read_list(tmp_path / "far_train", layout.VAL_LIST) == []
    assert len(layout.read_list(tmp_path / "far_val", layout.VAL_LIST)) == val["images"]
    for label in (tmp_path / "far_train" / layout.LABELS).iterdir():
        rows = np.loadtxt(label, ndmin=2)
        assert (rows[:, 0] == 0).all() and (rows[:, 1:] > 0).all() and (rows[:, 1:] < 1).all()
    with pytest.raises(DatasetError, match="not empty"):
        generate_far_signs(car_frames, tmp_path / "far_train", "train")


def test_far_approach_drive_gets_closer_frame_by_frame(car_frames: Path, tmp_path: Path) -> None:
    options = ApproachOptions(start_m=60, end_m=10, speed_kmh=90, fps=10)
    (drive,) = far_drives_from_dataset(car_frames, tmp_path / "drives", 1, seed=0, options=options)
    labels = [json.loads(line) for line in (drive / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == options.frames == len((drive / "frames.jsonl").read_text().splitlines())
    distances = [line["distance_m"] for line in labels]
    assert distances[0] == 60 and all(a > b for a, b in itertools.pairwise(distances))
    heights = [line["boxes"][0][3] - line["boxes"][0][1] for line in labels if line["boxes"]]
    assert len(heights) >= len(labels) // 2 and heights[-1] > 3 * heights[0]
    meta = json.loads((drive / "meta.json").read_text())
    assert meta["far_approach"]["start_m"] == 60 and meta["intrinsics"]["fy"] > 0
    capture = cv2.VideoCapture(str(drive / "video.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(labels)
    assert used_backgrounds(car_frames) and meta["source"]["image"] not in {
        f"gtsdb_{i:05d}.jpg" for i in range(5)
    }
