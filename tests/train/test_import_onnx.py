"""edge-train import-onnx: the checkpoint recovered from an exported ONNX computes what the ONNX does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from stopsign.export.onnx_export import export_checkpoint, export_onnx
from stopsign.train.checkpoint import CheckpointError, load_checkpoint, spec_for_model
from stopsign.train.cli import main
from stopsign.train.import_onnx import import_onnx
from stopsign.train.model import build_model


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding matters
        model(torch.rand(4, 3, 128, 128))
    model.eval()
    spec = spec_for_model(model, ["stop_sign"], 128)
    return export_onnx(model, spec, tmp_path_factory.mktemp("m") / "m.onnx")


def test_recovered_checkpoint_matches_the_onnx(exported: Path, tmp_path: Path) -> None:
    assert main(["import-onnx", str(exported), "--out", str(tmp_path / "ckpt")]) == 0
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    assert checkpoint.spec.input_size == (128, 128)
    assert checkpoint.spec.training_data["imported_from_onnx"] == "m.onnx"
    again = export_checkpoint(tmp_path / "ckpt", tmp_path / "again.onnx", 128)
    x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    np.testing.assert_allclose(run(again, x), run(exported, x), rtol=1e-4, atol=1e-3)
    model = checkpoint.model.eval()
    with torch.no_grad():
        ours = model(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(ours, run(exported, x), rtol=1e-4, atol=1e-3)


def test_a_quantized_model_is_refused(exported: Path, tmp_path: Path) -> None:
    model = onnx.load(str(exported))
    node = onnx.helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"])
    model.graph.node.append(node)
    path = tmp_path / "q.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match="FP32 ONNX"):
        import_onnx(path, tmp_path / "out")


def test_a_model_without_a_spec_is_a_clear_error(exported: Path, tmp_path: Path) -> None:
    model = onnx.load(str(exported))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    assert main(["import-onnx", str(path), "--out", str(tmp_path / "o")]) == 2
