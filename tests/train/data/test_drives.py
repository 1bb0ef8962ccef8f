from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.train.data import layout
from stopsign.train.data.cli import main
from stopsign.train.data.drives import DriveOptions, build_drive
from stopsign.train.data.layout import DatasetError


def test_boxes_follow_the_camera_exactly(tmp_path: Path) -> None:
    still = np.zeros((200, 300, 3), np.uint8)
    still[90:110, 200:230] = (0, 0, 255)  # the "sign"
    sign = np.array([200, 90, 230, 110], np.float64)
    opts = DriveOptions(frames=12, fps=10, width=160, height=120)
    n = build_drive(still, sign, sign[None], tmp_path / "d", "approach", {"image": "x"}, opts, seed=1)
    labels = [json.loads(line) for line in (tmp_path / "d/labels.jsonl").read_text().splitlines()]
    cap = cv2.VideoCapture(str(tmp_path / "d/video.mp4"))
    widths = []
    for entry in labels:
        ok, frame = cap.read()
        assert ok
        if not entry["boxes"]:
            continue  # the occluder hid the sign in this frame
        x1, y1, x2, y2 = entry["boxes"][0]
        widths.append(x2 - x1)
        inner = frame[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2].reshape(-1, 3).mean(0)
        assert inner[2] > 120 and inner[0] < 60, entry  # red inside the labelled box
    cap.release()
    assert n == sum(len(e["boxes"]) for e in labels) >= 6
    assert widths[-1] > widths[0] * 1.5  # the sign grows as the car approaches
    frames = [json.loads(line) for line in (tmp_path / "d/frames.jsonl").read_text().splitlines()]
    assert [f["index"] for f in frames] == list(range(12))
    assert frames[1]["pts_ns"] == 100_000_000
    assert all(b["monotonic_ns"] > a["monotonic_ns"] for a, b in itertools.pairwise(frames))
    meta = json.loads((tmp_path / "d/meta.json").read_text())
    assert (meta["width"], meta["height"], meta["fps"]) == (160, 120, 10)
    assert set(meta["intrinsics"]) == {"fx", "fy", "cx", "cy"}


def test_drive_cli_uses_only_validation_images(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(n_stop=6, n_neg=6)
    out = tmp_path / "drives"
    args = [
        "drive-from-stills",
        str(root),
        "--out",
        str(out),
        "--approach",
        "1",
        "--confuser",
        "1",
        "--night",
        "1",
    ]
    assert main([*args, "--frames", "8", "--width", "96", "--height", "72"]) == 0
    val = {Path(e).name for e in layout.read_list(root, layout.VAL_LIST)}
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["approach_00", "confuser_00", "night_00"]
    for folder in out.iterdir():
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["source"]["image"] in val
        labels = (folder / "labels.jsonl").read_text().splitlines()
        assert len(labels) == 8
        if folder.name.startswith("confuser"):
            assert all(json.loads(line)["boxes"] == [] for line in labels)


def test_drive_cli_needs_enough_val_images(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(n_stop=2, n_neg=2)
    from stopsign.train.data.drives import drives_from_dataset

    with pytest.raises(DatasetError, match="val stop images"):
        drives_from_dataset(root, tmp_path / "d", n_approach=3)
