"""bench/far_signs.py: every evaluation it runs uses the backend asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.bench_scripts import load_bench_script


def test_video_tiles_run_on_the_backend_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --video-tiles once ran on ONNX Runtime whatever --backend said (an OpenVINO IR then failed to load).
    script = load_bench_script("far_signs")
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((64, 96, 3), np.uint8))
    calls: list[dict[str, Any]] = []

    def recording_evaluate(model, entries, tiles, threshold, threads, still=True, backend_name="onnxruntime"):
        calls.append({"tiles": tiles.mode, "still": still, "backend": backend_name})
        return {}

    monkeypatch.setattr(script, "evaluate", recording_evaluate)
    monkeypatch.setattr(script, "markdown", lambda rows: "")
    argv = ["--data", str(tmp_path), "--tiles", "none", "auto", "--video-tiles", "--backend", "openvino"]
    assert script.main(argv) == 0
    assert [c["still"] for c in calls] == [True, True, False]
    assert {c["backend"] for c in calls} == {"openvino"}
