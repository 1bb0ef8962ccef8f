"""TensorRT backend: what runs without TensorRT here (EfficientNMS rows, engine lookup, mypy against
tensorrt-stubs), and the engine path where the real runtime imports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.backends.base import BackendError, BackendOptions, resolve_backend
from stopsign.edge.backends.tensorrt import TensorRTBackend, engine_for, nms_rows, tensorrt_runtime_available
from stopsign.edge.vision.postprocess import decode_yolov5
from tests.tensorrt_stubs import mypy_available, run_mypy, typecheckable_stubs

TENSORRT_MODULES = ("edge/backends/tensorrt.py", "edge/backends/cuda_memory.py")


@pytest.mark.parametrize(
    ("count", "expected_boxes", "expected_classes"),
    [
        (2, [[10, 20, 50, 80], [100, 100, 120, 130]], [0, 1]),
        (1, [[10, 20, 50, 80]], [0]),
        (0, [], []),
    ],
)
def test_efficient_nms_outputs_decode_to_the_same_boxes(
    count: int, expected_boxes: list[list[int]], expected_classes: list[int]
) -> None:
    rows = nms_rows(
        np.array([[count]], np.int32),
        np.array([[[10, 20, 50, 80], [100, 100, 120, 130], [0, 0, 0, 0]]], np.float32),
        np.array([[0.9, 0.6, 0.0]], np.float32),
        np.array([[0, 1, 0]], np.int32),
        num_classes=2,
    )
    assert rows.shape == (1, count, 7)
    detections = decode_yolov5(rows, conf_threshold=0.25, iou_threshold=0.45)
    order = np.argsort(-detections.score)
    assert detections.xyxy[order].tolist() == expected_boxes
    assert detections.score[order].tolist() == pytest.approx([0.9, 0.6][:count])
    assert detections.class_id[order].tolist() == expected_classes


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("m.engine", "m.engine"),
        ("m.plan", "m.plan"),
        ("m.onnx", "m.engine"),
        ("d/m.fp16.onnx", "d/m.fp16.engine"),
    ],
)
def test_engine_for(given: str, expected: str) -> None:
    assert engine_for(given) == Path(expected)


def test_the_stubs_package_is_not_the_runtime() -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("neither tensorrt nor tensorrt-stubs is installed")
    import tensorrt

    assert tensorrt_runtime_available() == hasattr(tensorrt, "Runtime")


@pytest.mark.skipif(tensorrt_runtime_available(), reason="TensorRT is installed here")
def test_explicit_tensorrt_without_runtime_is_an_error() -> None:
    with pytest.raises(BackendError, match="not available"):
        resolve_backend("tensorrt", Path("model.engine"))


def test_infer_before_load_is_an_error() -> None:
    with pytest.raises(BackendError, match="before load"):
        TensorRTBackend().infer(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.skipif(not mypy_available(), reason="mypy is not installed")
def test_mypy_clean_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = typecheckable_stubs(tmp_path / "stubs")
    if stubs is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    # Negative control: with the stubs in effect a wrong use of the engine API is an error.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tensorrt as trt\n\ndef f(e: trt.ICudaEngine) -> str:\n    return e.num_io_tensors\n"
    )
    bad = run_mypy(stubs, probe)
    assert bad.returncode == 1 and "Incompatible return value" in bad.stdout, bad.stdout + bad.stderr
    result = run_mypy(stubs, *TENSORRT_MODULES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.tensorrt
@pytest.mark.skipif(not tensorrt_runtime_available(), reason="needs the TensorRT runtime and a CUDA GPU")
@pytest.mark.parametrize("sidecar", ["missing", "wrong version"])
def test_stale_engine_is_refused_before_tensorrt_reads_it(tmp_path: Path, sidecar: str) -> None:
    import json

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    if sidecar == "wrong version":
        (tmp_path / "m.engine.json").write_text(json.dumps({"tensorrt_version": "0.0"}))
    with pytest.raises(BackendError, match="rebuild|sidecar|keys"):
        TensorRTBackend().load(engine, None, BackendOptions())
