"""bench/qdq_runtime_drift.py: the reference is the Q/DQ graph's own meaning, and ONNX Runtime is it.

The OpenVINO half of the script runs in OpenVINO's own test process (test_openvino.py)."""

from __future__ import annotations

import numpy as np

from tests.bench_scripts import load_bench_script


def test_onnxruntime_runs_the_shipped_int8_file_exactly_as_its_qdq_graph_defines() -> None:
    # Why INT8 replays are compared against ONNX Runtime: with its graph optimisations on (as the
    # backend runs it) it gives what the Q/DQ operators define, to float rounding.
    script = load_bench_script("qdq_runtime_drift")
    inputs = script.network_inputs(script.drive_frames(every=30), 416)
    model = script.ASSETS / "stopsign.int8.onnx"
    exact = script.run_reference(model, inputs)
    optimised = script.run_backend("onnxruntime", model, inputs)
    assert len(inputs) >= 8
    assert np.abs(script.scores(optimised) - script.scores(exact)).max() < 1e-4
    fp32 = script.run_backend("onnxruntime", script.ASSETS / "stopsign.onnx", inputs)
    assert np.abs(script.scores(fp32) - script.scores(exact)).max() > 0.01  # the reference is INT8


def test_the_score_table_reads_every_run_against_the_reference() -> None:
    script = load_bench_script("qdq_runtime_drift")
    raw = np.zeros((2, 4, 6), np.float32)
    raw[..., 4], raw[..., 5] = 0.5, 1.0
    other = raw.copy()
    other[0, 0, 4] = 0.8
    lines = script.score_table({"reference": raw, "same": raw.copy(), "other": other})
    rows = [line for line in lines if line.startswith("| ") and "run" not in line]
    # 8 anchors above the floor, one off by 0.3: the interpolated p90 is 0.09.
    assert rows == ["| same | 0.0000 | 0.0000 | 0.0000 |", "| other | 0.0000 | 0.0900 | 0.3000 |"]
