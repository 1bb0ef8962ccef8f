"""The project's sample drives must replay to their expected outputs with the shipped model.

Runs through the public pytest plugin (``stopsign.edge.replay.pytest_plugin``), exactly as a user
would point it at their own drives: ``pytest --drives DIR --replay-model M``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.cli import replay as replay_cli
from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.replay.expected import to_lines
from stopsign.edge.replay.runner import replay

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "drives"
SHIPPED = Path(__file__).resolve().parents[3] / "edge" / "assets" / "stopsign.onnx"
SAMPLE_DRIVES = (
    sorted(d for d in SAMPLES.iterdir() if (d / "frames.jsonl").is_file()) if SAMPLES.is_dir() else []
)


def test_samples_exist() -> None:
    assert {d.name for d in SAMPLE_DRIVES} >= {
        "day_approach",
        "night_approach",
        "no_entry_and_yield",
        "occluded_approach",
    }


@pytest.mark.parametrize("drive", SAMPLE_DRIVES, ids=[d.name for d in SAMPLE_DRIVES])
def test_sample_drive_matches_expected(drive: Path, replay_check) -> None:
    replay_check(drive)


@pytest.mark.parametrize("drive", SAMPLE_DRIVES, ids=[d.name for d in SAMPLE_DRIVES])
def test_sample_drive_matches_expected_with_the_int8_file(drive: Path, replay_check) -> None:
    """The shipped Q/DQ file on ONNX Runtime (what ``auto`` runs a given .onnx on): INT8 outputs are
    per runtime, so this compares with ``<sha>.onnxruntime.jsonl``, not OpenVINO's file."""
    int8 = SHIPPED.with_name("stopsign.int8.onnx")
    assert (drive / "expected" / f"{sha256_file(int8)[:16]}.onnxruntime.jsonl").is_file()
    replay_check(drive, int8)


def test_user_drives(recorded_drive: Path, replay_check) -> None:
    """One test per drive given with --drives (none by default)."""
    replay_check(recorded_drive)


@pytest.fixture
def shipped_model() -> Path:
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped model at {SHIPPED}")
    return SHIPPED


def test_replaying_a_sample_twice_is_identical(shipped_model: Path) -> None:
    drive = SAMPLES / "day_approach"
    first, second = to_lines(replay(drive, shipped_model)), to_lines(replay(drive, shipped_model))
    assert first == second
    assert any(line["kind"] == "event" for line in first)


def test_a_perturbed_shipped_model_fails_naming_frames_and_events(
    shipped_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(shipped_model))
    for tensor in model.graph.initializer:  # every convolution's weights 5% larger, biases as they were
        weights = numpy_helper.to_array(tensor)
        if weights.dtype == np.float32 and weights.ndim >= 2:
            tensor.CopyFrom(numpy_helper.from_array(weights * np.float32(1.05), tensor.name))
    perturbed = tmp_path / "perturbed.onnx"
    onnx.save(model, str(perturbed))
    drive = SAMPLES / "day_approach"
    expected = next((drive / "expected").glob("*.jsonl"))
    assert replay_cli.main([str(drive), "--model", str(perturbed), "--expected", str(expected)]) == 1
    out = capsys.readouterr().out
    event_lines = [line for line in out.splitlines() if line.startswith("  event ")]
    assert event_lines and "stop_sign_ahead" in event_lines[0]  # the events that differ come first
    assert "frames differ: " in out and "frame 0 detections: box" in out
