"""bench/host_stages.py: every host stage of the loop is timed on a real frame, in one process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "host_stages.py"


def load_script():
    spec = importlib.util.spec_from_file_location("host_stages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_every_stage_is_timed_for_a_float_backend(capsys: pytest.CaptureFixture[str]) -> None:
    # ONNX Runtime takes the float network input: no uint8 row. (OpenVINO is tested in its own
    # process: test_openvino.py covers image inputs.)
    assert (
        load_script().main(
            ["--backend", "onnxruntime", "--frames", "4", "--warmup", "1", "--size", "640x360"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "batcher input float32" in out
    rows = {line.split(" | ")[0].strip("| ") for line in out.splitlines() if line.startswith("| ")}
    assert rows == {
        "stage", "model only, float32 input", "batcher (letterbox [+ float conversion])",
        "content checks, letterboxed copy", "inference in the loop", "decode + NMS", "content checks, full-size frame",
    }  # fmt: skip
