"""edge-calibrate select + qdq on a Darknet model's ONNX: the set is stretched as the model is."""

from __future__ import annotations

import json
from pathlib import Path

from stopsign.calibration.cli import main
from tests.train.darknet.helpers import darknet_onnx


def test_select_and_qdq(dataset: Path, tmp_path: Path) -> None:
    model = darknet_onnx(tmp_path / "m", size=160)
    calib = tmp_path / "calib"
    assert main(["select", str(dataset), "--n", "8", "--model", str(model), "--out", str(calib)]) == 0
    manifest = json.loads((calib / "manifest.json").read_text())
    assert manifest["resize"] == "stretch" and manifest["input_size"] == [160, 160]
    int8 = tmp_path / "m.int8.onnx"
    assert main(["qdq", str(model), "--calib", str(calib), "--method", "minmax", "--out", str(int8)]) == 0
    assert int8.stat().st_size > 0
