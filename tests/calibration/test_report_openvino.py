"""edge-calibrate report --backend openvino: the same report as ONNX Runtime, on OpenVINO.

Runs in its own process (tests/edge/backends/test_openvino_isolated.py), as every OpenVINO test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stopsign.calibration.cli import main
from stopsign.calibration.qdq import QdqOptions, quantize_qdq
from stopsign.calibration.report import build_report
from stopsign.edge.backends.openvino import OpenVinoBackend

pytestmark = [
    pytest.mark.skipif(not OpenVinoBackend.is_available(), reason="openvino is not installed"),
    pytest.mark.skipif(
        os.environ.get("STOPSIGN_OPENVINO_TESTS") != "1",
        reason="run in their own process by tests/edge/backends/test_openvino_isolated.py",
    ),
]


def test_report_on_openvino_matches_onnxruntime_for_fp32(
    dataset: Path, fp32_model: Path, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    int8 = quantize_qdq(fp32_model, calib_dir, tmp_path / "m.minmax.onnx", QdqOptions(method="minmax")).out
    _, ort_rows = build_report(fp32_model, [int8], dataset, limit=8, backend="onnxruntime")
    text, ov_rows = build_report(fp32_model, [int8], dataset, limit=8, backend="openvino")
    assert [r.backend for r in ov_rows] == ["openvino", "openvino"]
    assert "| openvino CPU p50 ms |" in text
    # FP32 runs in f32 on OpenVINO (no bf16 down-cast): the same metrics as ONNX Runtime.
    assert ov_rows[0].metrics.map50 == pytest.approx(ort_rows[0].metrics.map50, abs=0.02)
    assert ov_rows[1].latency_ms_p50 > 0
    doc = tmp_path / "int8.md"
    argv = ["report", "--model", str(fp32_model), "--int8", str(int8), "--data", str(dataset), "--limit", "4",
            "--out", str(doc), "--backend", "openvino"]  # fmt: skip
    assert main(argv) == 0
    assert "openvino CPU p50 ms" in doc.read_text()


def test_an_unknown_backend_is_a_clear_error(
    dataset: Path, fp32_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "--model", str(fp32_model), "--int8", str(fp32_model), "--data", str(dataset),
            "--out", str(tmp_path / "r.md"), "--backend", "nosuch"]  # fmt: skip
    assert main(argv) == 2
    assert "--backend nosuch: unknown backend 'nosuch'" in capsys.readouterr().err
