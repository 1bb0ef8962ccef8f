"""The torch backend on the CPU gives the same raw output as ONNX Runtime on the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stopsign.edge.backends.base import BackendError, BackendOptions, resolve_backend
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.backends.torch import TorchBackend
from stopsign.export.onnx_export import export_onnx
from stopsign.train.checkpoint import save_checkpoint, spec_for_model
from stopsign.train.model import build_model


@pytest.fixture(scope="module")
def checkpoint_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    spec = spec_for_model(model, ["stop_sign"], 160)
    ckpt = save_checkpoint(folder / "best", model, spec)
    return ckpt, export_onnx(model, spec, folder / "m.onnx")


def test_matches_onnxruntime_on_cpu(checkpoint_and_onnx: tuple[Path, Path]) -> None:
    ckpt, onnx_path = checkpoint_and_onnx
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    torch_backend, ort_backend = TorchBackend(), OnnxRuntimeBackend()
    spec = torch_backend.load(ckpt, None, BackendOptions(device="cpu"))
    ort_backend.load(onnx_path, None, BackendOptions(device="cpu"))
    assert spec.input_size == (160, 160)
    ours, reference = torch_backend.infer(x), ort_backend.infer(x)
    assert ours.shape == reference.shape
    scale = np.array([160, 160, 160, 160, 1, 1], np.float32)  # boxes relative to the input size
    assert np.abs((ours - reference) / scale).max() < 1e-4
    assert torch_backend.describe()["precision"] == "fp32"


def test_auto_picks_torch_for_a_checkpoint_folder(checkpoint_and_onnx: tuple[Path, Path]) -> None:
    ckpt, onnx_path = checkpoint_and_onnx
    assert resolve_backend("auto", ckpt) is TorchBackend
    assert resolve_backend("auto", onnx_path) is OnnxRuntimeBackend


def test_wrong_inputs_are_named(checkpoint_and_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    backend = TorchBackend()
    with pytest.raises(BackendError, match="no such checkpoint folder"):
        backend.load(tmp_path / "missing", None, BackendOptions(device="cpu"))
    backend.load(checkpoint_and_onnx[0], None, BackendOptions(device="cpu"))
    with pytest.raises(BackendError, match="input shape"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))
