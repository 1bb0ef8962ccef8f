"""Fixtures: a tiny drawn dataset (red octagons on noise) and a random-init yolov5n at 160 px."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.model.spec import ModelSpec

IMG = 160


def draw_scene(rng: np.random.Generator, brightness: float, sign_px: int | None) -> tuple[np.ndarray, list]:
    """A 240x320 BGR noise image, optionally with one red octagon of side ``sign_px``; YOLO boxes."""
    height, width = 240, 320
    image = (rng.random((height, width, 3)) * 255 * brightness).astype(np.uint8)
    boxes = []
    if sign_px is not None:
        half = sign_px // 2 + 1
        cx = int(rng.integers(half, width - half))
        cy = int(rng.integers(half, height - half))
        radius = sign_px / 2
        points = [
            (
                cx + radius * math.cos(math.pi / 8 + k * math.pi / 4),
                cy + radius * math.sin(math.pi / 8 + k * math.pi / 4),
            )
            for k in range(8)
        ]
        cv2.fillPoly(image, [np.array(points, dtype=np.int32)], (30, 30, int(200 * brightness) + 40))
        boxes.append((cx / width, cy / height, sign_px / width, sign_px / height))
    return image, boxes


def make_dataset(root: Path, n: int = 24, seed: int = 0) -> Path:
    """Canonical layout: images/, labels/, sources.jsonl (two sources), val.txt, data.yaml."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    records, names = [], []
    for i in range(n):
        role = ("stop", "stop", "confuser", "negative")[i % 4]
        brightness = (1.0, 0.55, 0.2)[i % 3]
        sign = (20, 80, 200)[(i // 4) % 3] if role == "stop" else None
        image, boxes = draw_scene(rng, brightness, sign)
        if role == "confuser":  # a red square: a look-alike that is not a stop sign
            cv2.rectangle(image, (100, 80), (140, 120), (30, 30, 220), -1)
        name = f"img{i:03d}.jpg"
        cv2.imwrite(str(root / "images" / name), image)
        (root / "labels" / f"img{i:03d}.txt").write_text(
            "".join(f"0 {b[0]} {b[1]} {b[2]} {b[3]}\n" for b in boxes)
        )
        source = "synthA" if i % 2 else "synthB"
        records.append(
            {
                "image": name,
                "source": source,
                "original": name,
                "licence": "CC0",
                "role": role,
                "n_stop": len(boxes),
            }
        )
        names.append(f"images/{name}")
    (root / "sources.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "val.txt").write_text("".join(n + "\n" for n in names))
    (root / "data.yaml").write_text("names: [stop_sign]\nnc: 1\nval: val.txt\ntrain: val.txt\n")
    return root


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("calib-data") / "data")


@pytest.fixture(scope="session")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init yolov5n exported at 160 px with its ModelSpec in the metadata."""
    import torch

    from stopsign.export.onnx_export import export_onnx
    from stopsign.train.model import build_model

    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    spec = ModelSpec(
        class_names=["stop_sign"],
        input_size=(IMG, IMG),
        strides=tuple(model.strides),
        anchors=tuple(tuple(row) for row in model.anchors_pixels()),
        architecture="yolov5n",
        operating_threshold=0.25,
    )
    return export_onnx(model, spec, tmp_path_factory.mktemp("calib-model") / "m.onnx")


@pytest.fixture(scope="session")
def calib_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stopsign.calibration.select import SelectOptions, select_calibration_set

    out = tmp_path_factory.mktemp("calib-set") / "set"
    select_calibration_set(dataset, out, SelectOptions(n=16, input_size=(IMG, IMG)))
    return out
