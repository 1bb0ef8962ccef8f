"""edge-replay takes a Darknet model's ONNX as it takes a YOLOv5 one (stretch resize)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stopsign.edge.cli import replay as replay_cli
from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from tests.train.darknet.helpers import darknet_onnx

DRIVE = Path(__file__).resolve().parents[3] / "samples" / "drives" / "day_approach"


@pytest.mark.skipif(not (DRIVE / "video.mp4").is_file(), reason=f"no sample drive at {DRIVE}")
def test_replay_of_a_sample_drive_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = darknet_onnx(tmp_path / "m")
    assert read_spec_from_onnx(model).resize == "stretch"
    drive = tmp_path / "drive"
    shutil.copytree(DRIVE, drive, ignore=shutil.ignore_patterns("expected"))
    assert replay_cli.main([str(drive), "--model", str(model), "--conf", "0.05", "--update-expected"]) == 0
    written = list((drive / "expected").glob("*.jsonl"))
    assert len(written) == 1 and written[0].stat().st_size > 0
    assert replay_cli.main([str(drive), "--model", str(model), "--conf", "0.05"]) == 0
