"""bench/corruptions.py end to end on two images with the shipped model: seeded, complete, mergeable."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.bench_scripts import load_bench_script


def _tiny_split(root: Path) -> Path:
    """A plain folder: one red octagon labelled as a stop sign, one empty street-like frame."""
    root.mkdir()
    sign = np.full((240, 320, 3), (90, 110, 120), np.uint8)
    angles = np.deg2rad(22.5 + 45 * np.arange(8))
    octagon = np.stack([160 + 60 * np.cos(angles), 120 + 60 * np.sin(angles)], 1).astype(np.int32)
    cv2.fillPoly(sign, [octagon], (40, 30, 200))
    cv2.putText(sign, "STOP", (112, 135), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 255, 255), 3)
    cv2.imwrite(str(root / "a_sign.jpg"), sign)
    (root / "a_sign.txt").write_text("0 0.5 0.5 0.375 0.5\n")
    cv2.imwrite(str(root / "b_empty.jpg"), np.full((200, 300, 3), 100, np.uint8))
    (root / "b_empty.txt").write_text("")
    return root


@pytest.mark.slow  # ~20 s on 2 loaded cores: four ONNX Runtime sessions
def test_runs_merges_and_repeats(tmp_path: Path) -> None:
    script = load_bench_script("corruptions")
    data = _tiny_split(tmp_path / "data")
    argv = ["--data", str(data), "--corruptions", "fog", "jpeg", "--severities", "1", "5", "--threads", "1"]
    assert script.main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    assert script.main([*argv, "--json", str(tmp_path / "b.json"), "--seed", "0"]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    (run,) = a["runs"]
    assert set(run["corruptions"]) == {"fog", "jpeg"} and set(run["corruptions"]["fog"]) == {"1", "5"}
    for cell in [run["clean"], *(c for rows in run["corruptions"].values() for c in rows.values())]:
        assert 0 <= cell["map50"] <= 1 and 0 <= cell["recall"] <= 1
    assert {"mPC", "rPC", "mCE", "CE", "mean_recall"} <= set(run["summary"])
    assert run["corruptions"] == b["runs"][0]["corruptions"]  # seeded: the same numbers again
    # Another run with only defocus: merged per model, tables and plot from the files alone.
    assert (
        script.main(
            [*argv[:2], "--corruptions", "defocus", "--severities", "3", "--json", str(tmp_path / "c.json")]
        )
        == 0
    )
    merged = script.merge_runs([tmp_path / "a.json", tmp_path / "c.json"])
    assert set(merged[0]["corruptions"]) == {"fog", "jpeg", "defocus"}
    plot = tmp_path / "plot.png"
    assert (
        script.main(["--from-json", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--plot", str(plot)])
        == 0
    )
    assert plot.stat().st_size > 0


def test_a_merged_run_is_plotted_in_severity_order() -> None:
    """Runs merged with --from-json keep severities in the order they were measured; the curve sorts them."""
    script = load_bench_script("corruptions")
    rows = {v: {"map50": 1.0 - int(v) / 10, "recall": 0.9 - int(v) / 10} for v in ("3", "5", "1", "2", "4")}
    xs, ys = script.severity_curve({"map50": 0.95, "recall": 0.92}, rows, "map50")
    assert xs == [0, 1, 2, 3, 4, 5]
    assert ys == pytest.approx([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert script.severity_curve({"map50": 0.95, "recall": 0.92}, rows, "recall")[1][0] == 0.92


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--model", "missing.onnx"], "model missing.onnx does not exist"), (["--data", "nowhere"], "nowhere")],
)
def test_bad_input_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    script = load_bench_script("corruptions")
    data = _tiny_split(tmp_path / "data")
    assert script.main(["--data", str(data), *extra]) == 2
    assert message in capsys.readouterr().err
