"""Fixtures for the edge runtime tests: a real (untrained) YOLOv5n exported to ONNX, small inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stopsign.edge.model.spec import ModelSpec


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yolov5n (random weights, nc=1) exported with its ModelSpec at 160x160 by stopsign.export."""
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with a symbolic batch axis (``edge-export onnx --dynamic``)."""
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny_dynamic.onnx", dynamic=True)


def export_tiny(out: Path, dynamic: bool = False, size: int = 160) -> Path:
    torch = pytest.importorskip("torch")
    from stopsign.export.onnx_export import export_onnx
    from stopsign.train.model import build_model

    torch.manual_seed(0)
    model = build_model("yolov5n", nc=1).eval()
    spec = ModelSpec(
        class_names=["stop_sign"],
        input_size=(size, size),
        strides=tuple(int(s) for s in model.strides),
        anchors=tuple(tuple(float(v) for v in row) for row in model.anchors_pixels()),
        architecture="yolov5n",
    )
    return export_onnx(model, spec, out, dynamic=dynamic)
