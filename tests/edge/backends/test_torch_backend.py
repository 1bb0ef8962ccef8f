"""The torch backend on the CPU gives the same raw output as ONNX Runtime on the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stopsign.edge.backends.base import BackendError, BackendOptions, resolve_backend
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.backends.torch import TorchBackend
from stopsign.edge.vision.letterbox import letterbox, to_network_input
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.export.onnx_export import export_onnx
from stopsign.train.checkpoint import save_checkpoint, spec_for_model
from stopsign.train.model import build_model


@pytest.fixture(scope="module")
def checkpoint_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    with torch.no_grad():  # an untrained head scores every cell alike: vary it so boxes differ
        for conv in model.detect.m:
            conv.weight.normal_(0, 0.05)
    spec = spec_for_model(model, ["stop_sign"], 160)
    ckpt = save_checkpoint(folder / "best", model, spec)
    return ckpt, export_onnx(model, spec, folder / "m.onnx")


@pytest.fixture(scope="module")
def cpu_backend(checkpoint_and_onnx: tuple[Path, Path]) -> TorchBackend:
    backend = TorchBackend()
    backend.load(checkpoint_and_onnx[0], None, BackendOptions(device="cpu"))
    return backend


def test_matches_onnxruntime_on_cpu(
    checkpoint_and_onnx: tuple[Path, Path], cpu_backend: TorchBackend
) -> None:
    _, onnx_path = checkpoint_and_onnx
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    torch_backend, ort_backend = cpu_backend, OnnxRuntimeBackend()
    spec = torch_backend.spec
    assert spec is not None
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


# Frames that need no resize (the letterbox only pads), so the host path and detect() see the same input.
@pytest.mark.parametrize("source_hw", [(160, 160), (120, 160), (160, 96)])
def test_detect_equals_host_letterbox_infer_decode(
    cpu_backend: TorchBackend, source_hw: tuple[int, int]
) -> None:
    backend = cpu_backend
    spec = backend.spec
    assert spec is not None
    image = np.random.default_rng(1).integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    letterboxed, transform = letterbox(image, spec.input_size, spec.pad_value)
    raw = backend.infer(to_network_input(letterboxed, spec.scale, spec.color_order == "RGB"))
    scores = raw[0, :, 4] * raw[0, :, 5:].max(axis=1)
    conf = float(np.quantile(scores, 0.98))  # an untrained model: take its top boxes as "detections"
    expected = decode_yolov5(raw, conf, spec.nms_iou, transform)
    got = backend.detect(image, conf)
    assert len(expected) >= 2 and len(got) == len(expected)
    order_e, order_g = np.argsort(-expected.score), np.argsort(-got.score)
    np.testing.assert_allclose(got.xyxy[order_g], expected.xyxy[order_e], atol=1e-3)
    np.testing.assert_allclose(got.score[order_g], expected.score[order_e], atol=1e-5)
    assert got.class_id.tolist() == [0] * len(got)


def test_detect_rejects_a_non_image(cpu_backend: TorchBackend) -> None:
    with pytest.raises(BackendError, match="HxWx3 uint8"):
        cpu_backend.detect(np.zeros((160, 160), np.uint8))


def test_wrong_inputs_are_named(checkpoint_and_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    backend = TorchBackend()
    with pytest.raises(BackendError, match="no such checkpoint folder"):
        backend.load(tmp_path / "missing", None, BackendOptions(device="cpu"))
    backend.load(checkpoint_and_onnx[0], None, BackendOptions(device="cpu"))
    with pytest.raises(BackendError, match="input shape"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_detect_falls_back_to_the_dynamic_decode_when_the_fixed_one_is_full(
    cpu_backend: TorchBackend,
) -> None:
    """With the floor at 0 every box passes: more than the fixed decode holds, so detect() decodes
    the dynamic way, and still gives what the host path gives."""
    backend = cpu_backend
    spec = backend.spec
    assert spec is not None
    image = np.random.default_rng(2).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    letterboxed, transform = letterbox(image, spec.input_size, spec.pad_value)
    raw = backend.infer(to_network_input(letterboxed, spec.scale, spec.color_order == "RGB"))
    expected = decode_yolov5(raw, 0.0, spec.nms_iou, transform)
    before = backend.fixed_decode_fallbacks
    got = backend.detect(image, 0.0)
    assert backend.fixed_decode_fallbacks == before + 1
    assert len(got) == len(expected) > 256
    np.testing.assert_allclose(np.sort(got.score), np.sort(expected.score), atol=1e-5)
