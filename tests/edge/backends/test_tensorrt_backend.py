"""TensorRT backend: what runs without TensorRT here; the engine path where the runtime imports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.backends.base import BackendError, resolve_backend
from stopsign.edge.backends.tensorrt import TensorRTBackend, tensorrt_runtime_available
from stopsign.edge.postprocess import decode_yolov5
from stopsign.edge.spec import ModelSpec


def test_efficient_nms_outputs_decode_to_the_same_boxes() -> None:
    backend = TensorRTBackend()
    backend.spec = ModelSpec(class_names=["stop_sign", "other"])
    backend._host = {
        "num_dets": np.array([[2]], np.int32),
        "det_boxes": np.array([[[10, 20, 50, 80], [100, 100, 120, 130], [0, 0, 0, 0]]], np.float32),
        "det_scores": np.array([[0.9, 0.6, 0.0]], np.float32),
        "det_classes": np.array([[0, 1, 0]], np.int32),
    }
    detections = decode_yolov5(backend._nms_rows(), conf_threshold=0.25, iou_threshold=0.45)
    order = np.argsort(-detections.score)
    assert detections.xyxy[order].tolist() == [[10, 20, 50, 80], [100, 100, 120, 130]]
    assert detections.score[order].tolist() == pytest.approx([0.9, 0.6])
    assert detections.class_id[order].tolist() == [0, 1]


@pytest.mark.skipif(tensorrt_runtime_available(), reason="TensorRT is installed here")
def test_explicit_tensorrt_without_runtime_is_an_error() -> None:
    with pytest.raises(BackendError, match="not available"):
        resolve_backend("tensorrt", Path("model.engine"))


@pytest.mark.tensorrt
@pytest.mark.skipif(not tensorrt_runtime_available(), reason="needs the TensorRT runtime and a CUDA GPU")
def test_stale_engine_sidecar_is_refused(tmp_path: Path) -> None:
    from stopsign.edge.backends.base import BackendOptions

    (tmp_path / "m.engine").write_bytes(b"not an engine")
    with pytest.raises(BackendError, match="rebuild|sidecar"):
        TensorRTBackend().load(tmp_path / "m.engine", None, BackendOptions())
