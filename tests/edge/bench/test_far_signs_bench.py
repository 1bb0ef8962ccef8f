"""bench/far_signs.py: every evaluation it runs uses the backend asked for."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "far_signs.py"


def load_script(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("far_signs_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    monkeypatch.setitem(sys.modules, "far_signs_bench", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_video_tiles_run_on_the_backend_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --video-tiles once ran on ONNX Runtime whatever --backend said (an OpenVINO IR then failed to load).
    script = load_script(monkeypatch)
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
