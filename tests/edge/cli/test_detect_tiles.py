"""edge-detect with --tiles: config round trip, the start-up report, stills searched at native resolution."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.cli.detect import SHIPPED_MODEL, main
from stopsign.edge.cli.detect_config import ConfigError, build_config
from stopsign.edge.vision.postprocess import box_iou
from tests.edge.helpers import requires_gstreamer


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("file_value", "flag", "expected"),
    [
        (None, None, "none"),
        ("auto", None, "auto"),
        ("auto", "0,0,416,416", "0,0,416,416"),
        ("0.1,0.2,0.5,0.5", None, "0.1,0.2,0.5,0.5"),
    ],
)
def test_tiles_from_the_config_file_and_the_flag(
    file_value: str | None, flag: str | None, expected: str
) -> None:
    file_values = {"source": "test://"} | ({"tiles": file_value} if file_value else {})
    assert build_config(file_values, {"tiles": flag}).tiles == expected


@pytest.mark.parametrize("bad", ["1,2,3", "everywhere", "0,0,-5,5"])
def test_a_bad_tiles_value_is_a_config_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="tiles"):
        build_config({"source": "test://", "tiles": bad}, {})
    assert main(["--source", "test://", "--tiles", bad]) == 2
    assert "tiles" in capsys.readouterr().err


@requires_gstreamer
def test_video_with_tiles_reports_the_plan_and_runs(
    tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "e.jsonl"
    code = main(["--source", "test://?size=320x240&live=0&num-buffers=6", "--model", str(tiny_onnx),
                 "--tiles", "auto", "--events", str(events)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert json.loads(err.split("effective config: ", 1)[1].splitlines()[0])["tiles"] == "auto"
    assert "320x240 frame -> whole frame + 2 tile(s)" in err
    lines = read_jsonl(events)
    tiles = [e for e in lines if e["event"] == "tiles"]
    assert len(tiles) == 1 and tiles[0]["frame_size"] == "320x240" and len(tiles[0]["tiles"]) == 2
    assert lines[-1]["event"] == "stopped" and lines[-1]["processed"] == 6


def far_sign_photo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1600x1000 road scene with one stop sign 35 m away (about 30 px; 8 px in a 416 input)."""
    from stopsign.train.data.synth.backgrounds import procedural_road
    from stopsign.train.data.synth.far_signs import Placement, RoadCamera, composite_sign
    from stopsign.train.data.synth.signs import stop_sign

    rng = np.random.default_rng(seed)
    image = cv2.resize(procedural_road(rng, 416), (1600, 1000))
    camera = RoadCamera(focal_px=1400, cx=800, horizon_y=480, height_m=1.4)
    box = composite_sign(image, stop_sign(), camera, Placement(35.0, 4.0), rng)
    assert box is not None
    return image, box


def test_stills_with_tiles_find_a_far_sign_the_whole_frame_misses(tmp_path: Path) -> None:
    """The shipped model on a folder of photos: the same JSON lines, and the far sign found only with tiles."""
    folder = tmp_path / "stills"
    folder.mkdir()
    boxes = {}
    for seed in range(3):
        image, boxes[f"far_{seed}.png"] = far_sign_photo(seed)
        cv2.imwrite(str(folder / f"far_{seed}.png"), image)
    found: dict[str, list[float]] = {}
    for tiles in ("none", "auto"):
        out = tmp_path / f"d_{tiles}.jsonl"
        assert main(["--source", str(folder), "--model", str(SHIPPED_MODEL), "--backend", "onnxruntime", "--tiles", tiles, "--conf", "0.1",
                     "--detections", str(out), "--events", str(tmp_path / f"e_{tiles}.jsonl")]) == 0  # fmt: skip
        lines = read_jsonl(out)
        assert sorted(Path(line["image"]).name for line in lines) == sorted(boxes)
        scores = []
        for line in lines:
            truth = boxes[Path(line["image"]).name]
            best = 0.0
            for det in line["detections"]:
                assert set(det) == {"xyxy", "score", "class"}
                if box_iou(truth[None], np.array([det["xyxy"]], np.float32))[0, 0] >= 0.5:
                    best = max(best, det["score"])
            scores.append(best)
        found[tiles] = scores
    assert all(score >= 0.5 for score in found["auto"]), found  # the operating threshold
    assert all(a > n for a, n in zip(found["auto"], found["none"])), found
