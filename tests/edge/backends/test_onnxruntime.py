"""The ONNX Runtime backend on a real exported YOLOv5n: spec from metadata, providers, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from stopsign.edge.backends.base import BackendError, BackendOptions, backend_class, resolve_backend
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend, requested_providers


def test_loads_spec_from_metadata_and_infers(tiny_onnx: Path) -> None:
    backend = OnnxRuntimeBackend()
    spec = backend.load(tiny_onnx, None, BackendOptions(device="cpu", threads=1))
    assert spec.class_names == ["stop_sign"] and tuple(spec.input_size) == (160, 160)
    raw = backend.infer(np.zeros((1, 3, 160, 160), np.float32))
    assert raw.shape == (1, spec.num_outputs, 6) and raw.dtype == np.float32
    assert backend.describe()["providers"] == ["CPUExecutionProvider"]


def test_registry_resolves_onnx_files_to_onnxruntime(tiny_onnx: Path) -> None:
    assert resolve_backend("auto", tiny_onnx) is OnnxRuntimeBackend
    assert resolve_backend("onnxruntime", tiny_onnx) is OnnxRuntimeBackend
    assert backend_class("onnxruntime") is OnnxRuntimeBackend
    with pytest.raises(BackendError, match="unknown backend 'tflite'"):
        backend_class("tflite")


@pytest.mark.parametrize(
    ("device", "available", "asked"),
    [
        ("cpu", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        ("auto", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (
            "auto",
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (
            "tensorrt",
            ["CPUExecutionProvider"],
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
    ],
)
def test_requested_providers(device: str, available: list[str], asked: list[str]) -> None:
    assert requested_providers(device, available) == asked


def test_cuda_without_cuda_is_refused_unless_fallback_allowed(tiny_onnx: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no fallback to provoke")
    with pytest.raises(
        BackendError, match=r"asked onnxruntime for \['CUDAExecutionProvider'.*--allow-fallback"
    ):
        OnnxRuntimeBackend().load(tiny_onnx, None, BackendOptions(device="cuda"))
    backend = OnnxRuntimeBackend()
    backend.load(tiny_onnx, None, BackendOptions(device="cuda", allow_fallback=True))
    assert backend.fallback and backend.describe()["providers"] == ["CPUExecutionProvider"]


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"definitely not a protobuf")
    with pytest.raises(BackendError, match=r"model.onnx: onnxruntime cannot load it"):
        OnnxRuntimeBackend().load(bogus, None, BackendOptions(device="cpu"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="no such model file"):
        OnnxRuntimeBackend().load(tmp_path / "nope.onnx", None, BackendOptions(device="cpu"))


def test_onnx_without_spec(tiny_onnx: Path, tmp_path: Path) -> None:
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    stripped = tmp_path / "nospec.onnx"
    onnx.save(proto, str(stripped))
    with pytest.raises(BackendError, match="no 'stopsign.model_spec' ModelSpec"):
        OnnxRuntimeBackend().load(stripped, None, BackendOptions(device="cpu"))


def test_spec_that_does_not_match_the_graph(tiny_onnx: Path) -> None:
    backend = OnnxRuntimeBackend()
    spec = backend.load(tiny_onnx, None, BackendOptions(device="cpu"))
    with pytest.raises(BackendError, match="does not match ModelSpec input_size"):
        OnnxRuntimeBackend().load(
            tiny_onnx, spec.replace(input_size=(320, 320)), BackendOptions(device="cpu")
        )
    with pytest.raises(BackendError, match=r"not \(batch, N, 5 \+ 2\)"):
        OnnxRuntimeBackend().load(
            tiny_onnx, spec.replace(class_names=["a", "b"]), BackendOptions(device="cpu")
        )
