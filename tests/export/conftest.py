"""Fixtures for export tests: a small yolov5n model with detections, its checkpoint and ONNX exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stopsign.train.checkpoint import save_checkpoint, spec_for_model
from stopsign.train.model import build_model

IMG = 160  # small input keeps each export under a second on a 2-core CPU
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def make_model(seed: int = 0):
    """yolov5n, nc=1, random weights with objectness biased up so NMS has boxes to keep.

    A freshly initialised net gives ~0.001 objectness everywhere, the same for every image (activations
    fade through 60 layers). BN gains of ~2.5 keep them image-dependent and +1 on the objectness
    bias gives a few boxes above 0.25 per image, so detection parity is actually exercised.
    """
    torch.manual_seed(seed)
    model = build_model("yolov5n", nc=1).eval()
    with torch.no_grad():
        for conv in model.detect.m:
            conv.bias.view(model.detect.na, -1)[:, 4] += 1.0
        for module in model.modules():  # non-trivial BN statistics, so fusion is really tested
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.05, 0.05)
                module.weight.uniform_(2.4, 2.6)  # keeps activations image-dependent through 60 layers
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def model():
    return make_model()


@pytest.fixture(scope="session")
def spec(model):
    return spec_for_model(model, ["stop_sign"], IMG)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def fp32_onnx(model, spec, export_dir) -> Path:
    from stopsign.export.onnx_export import export_onnx

    return export_onnx(model, spec, export_dir / "m.onnx")


@pytest.fixture(scope="session")
def fp16_onnx(model, spec, export_dir) -> Path:
    from stopsign.export.onnx_export import export_onnx

    return export_onnx(model, spec, export_dir / "m.fp16.onnx", half=True)


@pytest.fixture(scope="session")
def checkpoint_dir(model, spec, tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt", model, spec)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real images live in ../shared/data)")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def synthetic_images():
    """The image maker below, as a fixture (test folders are not packages, so no imports between them)."""
    return make_synthetic_images


def make_synthetic_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """BGR uint8 test images of varied sizes: noise, flat colour, a red octagon on grey."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        h, w = int(rng.integers(90, 300)), int(rng.integers(90, 300))
        kind = i % 3
        if kind == 0:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 1:
            img = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        else:
            img = np.full((h, w, 3), 128, dtype=np.uint8)
            r = min(h, w) // 3
            angles = np.arange(8) * np.pi / 4 + np.pi / 8
            pts = np.stack([w / 2 + r * np.cos(angles), h / 2 + r * np.sin(angles)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], (30, 30, 200))
        images.append(img)
    return images
