"""edge-calibrate end to end: select -> qdq -> report, and exit status 2 with a message on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.calibration.cli import REPORT_BEGIN, REPORT_END, main


def test_select_qdq_report(
    dataset: Path, fp32_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calib = tmp_path / "calib"
    assert main(["select", str(dataset), "--n", "12", "--model", str(fp32_model), "--out", str(calib)]) == 0
    assert json.loads((calib / "manifest.json").read_text())["input_size"] == [160, 160]
    int8 = tmp_path / "m.minmax.onnx"
    assert (
        main(["qdq", str(fp32_model), "--calib", str(calib), "--method", "minmax", "--out", str(int8)]) == 0
    )
    assert "runs in ONNX Runtime CPU" in capsys.readouterr().out
    doc = tmp_path / "int8.md"
    doc.write_text("# INT8\n\nMethod text that must survive.\n")
    args = [
        "report",
        "--model",
        str(fp32_model),
        "--int8",
        str(int8),
        "--data",
        str(dataset),
        "--limit",
        "6",
        "--out",
        str(doc),
    ]
    assert main(args) == 0
    assert main(args) == 0  # a rerun replaces the section, never appends a second one
    text = doc.read_text()
    assert text.startswith("# INT8\n\nMethod text that must survive.")
    assert text.count(REPORT_BEGIN) == 1 and text.count(REPORT_END) == 1
    assert "| FP32 (`" in text and "INT8 Q/DQ (minmax)" in text and "6 labelled images" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["select", "{data}", "--n", "500", "--img", "160", "--out", "{tmp}/c"],
            "only 24 usable image(s) but --n 500",
        ),
        (["qdq", "{tmp}/missing.onnx", "--calib", "{tmp}", "--out", "{tmp}/o.onnx"], "no such ONNX file"),
        (["legacy-cache", "info", "{tmp}/none.calib"], "no such calibration cache"),
    ],
)
def test_bad_input_exit_2(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    filled = [a.format(data=dataset, tmp=tmp_path) for a in argv]
    assert main(filled) == 2
    assert message in capsys.readouterr().err
