"""bench/first_event.py: replays on the backend asked for, and reports the first event per drive."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_scripts import load_bench_script

DRIVE = Path(__file__).resolve().parents[3] / "samples" / "drives" / "day_approach"


def test_the_backend_option_reaches_the_replay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It once replayed on ONNX Runtime whatever the model, so an OpenVINO IR could not be measured.
    script = load_bench_script("first_event")
    real_replay, asked = script.replay, []

    def recording_replay(drive, model, backend, *args, **kwargs):
        asked.append(backend)
        return real_replay(drive, model, "onnxruntime", *args, **kwargs)  # OpenVINO stays out of this process

    monkeypatch.setattr(script, "replay", recording_replay)
    argv = [str(DRIVE), "--backend", "openvino", "--tiles", "none", "--enter", "0.4"]
    assert script.main(argv) == 0
    assert asked == ["openvino"]
    assert "| day_approach | 2, " in capsys.readouterr().out  # confirmed at its third frame
