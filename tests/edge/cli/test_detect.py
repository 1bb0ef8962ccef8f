"""``edge-detect`` end to end through real GStreamer pipelines and ONNX Runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.backends.base import Backend, BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.cli.detect import SHIPPED_MODEL, main, run_detect
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.runtime.inference import FatalBackendError
from stopsign.edge.vision.postprocess import box_iou
from tests.edge.helpers import requires_gstreamer

pytestmark = [pytest.mark.gstreamer, requires_gstreamer]

REPO = Path(__file__).resolve().parents[3]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def render_stop_sign_video(path: Path, frames: int = 24, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A stop sign (the synthetic generator's sprite) approaching and drifting over a noisy road.

    Returns the known boxes (frames, 4) xyxy in pixels.
    """
    from stopsign.train.data.synth.signs import stop_sign

    sprite = stop_sign()
    rng = np.random.default_rng(1)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    boxes = []
    for i in range(frames):
        background = np.zeros((h, w, 3), np.uint8)
        background[:] = (90, 110, 100)
        background[h // 2 :] = (70, 70, 72)
        background = cv2.add(background, rng.integers(0, 25, (h, w, 3), dtype=np.uint8))
        side = int(60 + 2 * i)
        x0, y0 = int(40 + 4 * i), int(40 + i)
        sign = cv2.resize(sprite.bgr, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(sprite.alpha, (side, side), interpolation=cv2.INTER_AREA)[..., None]
        roi = background[y0 : y0 + side, x0 : x0 + side].astype(np.float32)
        background[y0 : y0 + side, x0 : x0 + side] = (alpha * sign + (1 - alpha) * roi).astype(np.uint8)
        writer.write(background)
        boxes.append([x0, y0, x0 + side, y0 + side])
    writer.release()
    return np.asarray(boxes, np.float32)


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    n, shape = 0, (0, 0)
    while True:
        ok, image = capture.read()
        if not ok:
            break
        n, shape = n + 1, image.shape[:2]
    capture.release()
    return n, shape


def test_test_source_end_to_end_until_eos(tiny_onnx: Path, tmp_path: Path) -> None:
    out = {name: tmp_path / name for name in ("events.jsonl", "dets.jsonl", "frames.jsonl", "video.mp4")}
    code = main(
        [
            # Ordered (live=0): every frame, whatever the load; a live source may drop some.
            "--source", "test://?size=160x120&fps=30&num-buffers=20&live=0", "--model", str(tiny_onnx),
            "--events", str(out["events.jsonl"]), "--detections", str(out["dets.jsonl"]),
            "--log-frames", str(out["frames.jsonl"]), "--save", str(out["video.mp4"]),
        ]
    )  # fmt: skip
    assert code == 0
    events = read_jsonl(out["events.jsonl"])
    assert kinds(events)[0] == "started" and events[0]["providers"] == ["CPUExecutionProvider"]
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "eos"
    dets = read_jsonl(out["dets.jsonl"])
    assert [d["frame"] for d in dets] == list(range(20))
    records = read_jsonl(out["frames.jsonl"])
    assert len(records) == len(dets)
    assert set(records[0]["ms"]) == {
        "capture_age",
        "preprocess",
        "infer",
        "postprocess",
        "track",
        "sinks",
        "total",
    }
    assert all(r["ms"]["infer"] > 0 for r in records)
    assert count_frames(out["video.mp4"]) == (len(dets), (120, 160))


def test_file_source_with_a_rendered_stop_sign(tiny_onnx: Path, tmp_path: Path) -> None:
    video = tmp_path / "sign.mp4"
    boxes = render_stop_sign_video(video)
    dets_path, saved = tmp_path / "dets.jsonl", tmp_path / "annotated.mp4"
    # The untrained model finds boxes only at a very low floor: enough to see them drawn.
    code = main(
        ["--source", f"file://{video}", "--model", str(tiny_onnx), "--conf", "0.001",
         "--detections", str(dets_path), "--save", str(saved), "--events", str(tmp_path / "ev.jsonl")]
    )  # fmt: skip
    assert code == 0
    dets = read_jsonl(dets_path)
    assert [d["frame"] for d in dets] == list(range(len(boxes)))  # a file delivers every frame
    assert count_frames(saved) == (len(boxes), (240, 320))
    # Boxes are in source pixels and drawn on the saved video in green.
    capture = cv2.VideoCapture(str(saved))
    ok, first = capture.read()
    capture.release()
    assert ok and dets[0]["detections"]
    x1, y1, x2, y2 = (round(v) for v in dets[0]["detections"][0]["xyxy"])
    assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
    edge = first[max(y1 - 1, 0) : y1 + 2, x1 : x2 + 1].reshape(-1, 3).astype(int)
    green = (edge[:, 1] > 150) & (edge[:, 0] < 120) & (edge[:, 2] < 120)
    assert green.mean() > 0.5


@pytest.mark.skipif(
    not SHIPPED_MODEL.is_file(), reason=f"no trained model at {SHIPPED_MODEL} yet (the lead trains it)"
)
def test_trained_model_finds_the_rendered_sign(tmp_path: Path) -> None:
    video = tmp_path / "sign.mp4"
    boxes = render_stop_sign_video(video, frames=30, size=(640, 480))
    dets_path = tmp_path / "dets.jsonl"
    assert (
        main(
            [
                "--source",
                f"file://{video}",
                "--detections",
                str(dets_path),
                "--events",
                str(tmp_path / "e.jsonl"),
                # ONNX Runtime: auto would take the shipped OpenVINO INT8 IR, and OpenVINO stays out
                # of the main test process (tests/edge/backends/test_openvino_isolated.py).
                "--backend",
                "onnxruntime",
            ]
        )
        == 0
    )
    dets = read_jsonl(dets_path)
    hits = 0
    for record, box in zip(dets, boxes):
        found = np.asarray([d["xyxy"] for d in record["detections"]], np.float32).reshape(-1, 4)
        hits += bool(len(found) and box_iou(box[None], found).max() >= 0.5)
    assert hits >= 0.9 * len(boxes), f"IoU >= 0.5 in {hits}/{len(boxes)} frames"


def test_image_folder_writes_one_line_per_image(tiny_onnx: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stills"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("b.png", (90, 120)), ("a.jpg", (200, 100)), ("c.png", (64, 64))):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    dets_path = tmp_path / "dets.jsonl"
    code = main(
        [
            "--source",
            str(folder),
            "--model",
            str(tiny_onnx),
            "--conf",
            "0.001",
            "--detections",
            str(dets_path),
            "--events",
            str(tmp_path / "e.jsonl"),
        ]
    )
    assert code == 0
    lines = read_jsonl(dets_path)
    assert [Path(x["image"]).name for x in lines] == ["a.jpg", "b.png", "c.png"]
    for line, (h, w) in zip(lines, [(200, 100), (90, 120), (64, 64)]):
        for det in line["detections"]:
            x1, y1, x2, y2 = det["xyxy"]
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and det["score"] >= 0.001
            assert det["class"] == "stop_sign"


def test_missing_camera_fails_fast(tiny_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    code = main(["--camera", "/dev/video97", "--model", str(tiny_onnx)])
    assert code == 1 and time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "cannot open /dev/video97" in err and "Cannot identify device" in err


def test_no_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if SHIPPED_MODEL.is_file():
        pytest.skip("a shipped model exists: the default works")
    assert main(["--source", "test://"]) == 1
    assert "no shipped model" in capsys.readouterr().err


def test_config_file_and_flag_override(
    tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "detect.yaml"
    config.write_text(
        f"source: test://?size=64x48&num-buffers=5\nmodel: {tiny_onnx}\nconf: 0.5\nbudget-ms: 40\n"
    )
    code = main(["--config", str(config), "--conf", "0.3", "--events", str(tmp_path / "e.jsonl")])
    assert code == 0
    effective = capsys.readouterr().err.split("effective config: ", 1)[1].splitlines()[0]
    assert json.loads(effective)["conf"] == 0.3 and json.loads(effective)["budget_ms"] == 40.0
    config.write_text("sauce: test://\n")
    assert main(["--config", str(config)]) == 2
    assert "unknown key 'sauce'" in capsys.readouterr().err


def test_failing_sink_never_stops_detection(tiny_onnx: Path, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    events_path = tmp_path / "e.jsonl"
    code = main(
        [
            "--source",
            "test://?size=64x48&fps=60&num-buffers=30&live=0",  # ordered: all 30, whatever the load
            "--model",
            str(tiny_onnx),
            "--detections",
            "/dev/full",
            "--events",
            str(events_path),
        ]
    )
    assert code == 0
    events = read_jsonl(events_path)
    errors = [e for e in events if e["event"] == "sink_error"]
    assert errors and errors[0]["sink"] == "detections" and "No space left" in errors[0]["error"]
    assert events[-1]["event"] == "stopped" and events[-1]["processed"] == 30


def small_run(model: Path, tmp_path: Path, frames: int) -> DetectConfig:
    """``frames`` tiny test frames, in order; events to e.jsonl, detections to d.jsonl, no health line."""
    return DetectConfig(
        source=f"test://?size=64x48&live=0&num-buffers={frames}",
        model=str(model),
        events=str(tmp_path / "e.jsonl"),
        detections=str(tmp_path / "d.jsonl"),
        health=False,
    )


class FaultyBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, fed a wrongly shaped tensor on chosen calls: ONNX Runtime's own error."""

    def __init__(self, fail_calls: set[int], delay_s: float = 0.0) -> None:
        super().__init__()
        self.fail_calls, self.delay_s, self.calls = fail_calls, delay_s, 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.calls in self.fail_calls:
            return super().infer(batch[:, :2])
        return super().infer(batch)


def factory_of(make: callable, loads: list[int], fail_reload: bool = False):
    def factory(config: DetectConfig) -> tuple[Backend, ModelSpec]:
        loads.append(1)
        if fail_reload and len(loads) > 1:
            raise RuntimeError("CUDA device lost")
        backend = make()
        return backend, backend.load(config.model, None, BackendOptions(device="cpu"))

    return factory


def test_backend_errors_skip_frames_then_reinit(tiny_onnx: Path, tmp_path: Path) -> None:
    config = small_run(tiny_onnx, tmp_path, frames=12)
    loads: list[int] = []
    # Calls 3-5 of the first backend fail: 3 in a row -> re-initialised (a fresh backend that works).
    code = run_detect(
        config,
        threading.Event(),
        factory_of(lambda: FaultyBackend({3, 4, 5} if len(loads) == 1 else set()), loads),
    )
    assert code == 0 and len(loads) == 2
    events = read_jsonl(tmp_path / "e.jsonl")
    errors = [e for e in events if e["event"] == "backend_error"]
    assert [e["consecutive"] for e in errors] == [1, 2, 3] and "INVALID_ARGUMENT" in errors[0]["error"]
    assert "backend_reinit" in kinds(events)
    dets = read_jsonl(tmp_path / "d.jsonl")
    assert len(dets) == 12 and [d.get("skipped") is not None for d in dets].count(True) == 3
    assert events[-1]["processed"] == 9 and events[-1]["backend_errors"] == 3


def test_backend_that_cannot_be_reinitialised_ends_the_run(tiny_onnx: Path, tmp_path: Path) -> None:
    config = small_run(tiny_onnx, tmp_path, frames=12)
    with pytest.raises(FatalBackendError, match="(?s)could not be re-initialised.*CUDA device lost"):
        run_detect(
            config,
            threading.Event(),
            factory_of(lambda: FaultyBackend(set(range(1, 99))), [], fail_reload=True),
        )
    assert read_jsonl(tmp_path / "e.jsonl")[-1]["event"] == "stopped"


def test_live_capture_age_stays_bounded_with_a_slow_backend(tiny_onnx: Path, tmp_path: Path) -> None:
    """60 fps source, 100 ms inference: frames must be the newest, not a growing backlog (60 s: bench/)."""
    frames_path = tmp_path / "frames.jsonl"
    config = DetectConfig(
        source="test://?size=160x120&fps=60",
        model=str(tiny_onnx),
        max_frames=40,
        log_frames=str(frames_path),
        events=str(tmp_path / "e.jsonl"),
        health=False,
        budget_ms=1000,
    )
    assert (
        run_detect(config, threading.Event(), factory_of(lambda: FaultyBackend(set(), delay_s=0.1), [])) == 0
    )
    ages = [r["ms"]["capture_age"] for r in read_jsonl(frames_path)]
    assert len(ages) == 40
    # A backlog would add ~100 ms per frame (4 s by the end); the newest frame is < 1 frame old plus scheduling.
    assert max(ages[5:]) < 80, ages
    stopped = read_jsonl(tmp_path / "e.jsonl")[-1]
    assert stopped["dropped"] > 100  # ~4 s at 60 fps, 40 used


def test_sigterm_stops_cleanly(tiny_onnx: Path, tmp_path: Path) -> None:
    events_path = tmp_path / "e.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "stopsign.edge.cli.detect", "--source", "test://?size=64x48", "--model", str(tiny_onnx), "--events", str(events_path)],
        stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        events_path.exists() and "heartbeat" in events_path.read_text()
    ):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    events = read_jsonl(events_path)
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "signal"
    assert "[health] fps" in err


class AlreadySuppressed(OnnxRuntimeBackend):
    """Real ONNX Runtime loading, then the output of an EfficientNMS engine: two overlapping boxes
    that the engine decided to keep (``output_suppressed``), which host NMS would merge."""

    def __init__(self, suppressed: bool) -> None:
        super().__init__()
        self.output_suppressed = suppressed

    def infer(self, batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[2:]
        raw = np.zeros((1, 2, 6), np.float32)
        raw[0, :, :4] = [[w / 2, h / 2, w / 4, h / 4], [w / 2 + 1, h / 2, w / 4, h / 4]]
        raw[0, :, 4], raw[0, :, 5] = [0.9, 0.8], 1.0
        return raw


@pytest.mark.parametrize(("suppressed", "boxes"), [(True, 2), (False, 1)])
def test_engine_nms_output_skips_host_nms(
    tiny_onnx: Path, tmp_path: Path, suppressed: bool, boxes: int
) -> None:
    config = small_run(tiny_onnx, tmp_path, frames=3)
    assert run_detect(config, threading.Event(), factory_of(lambda: AlreadySuppressed(suppressed), [])) == 0
    dets = read_jsonl(tmp_path / "d.jsonl")
    assert [len(d["detections"]) for d in dets] == [boxes] * 3


@pytest.mark.parametrize(
    ("file_value", "flag", "expected"), [(None, None, 5.0), (2.0, None, 2.0), (2.0, 0.0, 0.0)]
)
def test_hold_gap_from_the_config_file_and_the_flag(file_value, flag, expected: float) -> None:
    from stopsign.edge.cli.detect import make_tracker
    from stopsign.edge.cli.detect_config import build_config
    from stopsign.edge.model.onnx_meta import read_spec_from_onnx

    file_values = {"source": "test://"} | ({"hold_gap": file_value} if file_value is not None else {})
    config = build_config(file_values, {"hold_gap": flag})
    assert config.hold_gap == expected
    tracker = make_tracker(read_spec_from_onnx(SHIPPED_MODEL), config, still_images=False)
    assert tracker is not None and tracker.config.hold_gap_s == expected


def test_a_negative_hold_gap_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--source", "test://", "--hold-gap", "-1"]) == 2
    assert "hold_gap=-1.0: must be >= 0" in capsys.readouterr().err
