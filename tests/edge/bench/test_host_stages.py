"""bench/host_stages.py: every host stage of the loop is timed on a real frame, in one process."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench_script


def test_every_stage_is_timed_for_a_float_backend(capsys: pytest.CaptureFixture[str]) -> None:
    # ONNX Runtime takes the float network input: no uint8 row. (OpenVINO is tested in its own
    # process: test_openvino.py covers image inputs.)
    assert (
        load_bench_script("host_stages").main(
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
