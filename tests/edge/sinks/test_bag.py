"""``--bag-out``: what edge-detect writes, read back by rosbags' own reader from the bag's schemas."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.cli.detect import main as detect_main
from stopsign.edge.runtime.health import FrameTimings
from stopsign.edge.sinks.bag import BagSink, BagSinkConfig
from stopsign.edge.sinks.base import FrameResult
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.frame import Frame
from tests.edge.rosbags_writer import STEP_NS, T0_NS, AnyReader, ImageTopic, make_frames, write_bag

REPO = Path(__file__).resolve().parents[3]
DRIVE = REPO / "samples" / "drives" / "day_approach"


def read_back(path: Path) -> tuple[dict[str, str], list[tuple[str, int, object]]]:
    """({topic: type}, [(topic, log time, message)]) with rosbags' reader and the bag's own
    ``ros2msg`` definitions (no typestore of ours: vision_msgs and foxglove_msgs must be in the file)."""
    with AnyReader([path]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        formats = {c.msgdef.format.name for c in reader.connections}
        assert formats == {"MSG"}  # ros2msg schemas
        messages = [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    return types, messages


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def drive_frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(DRIVE / "video.mp4"))
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        assert ok
        frames.append(image)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """edge-detect on a 12-frame stop-sign approach (a bag rosbags wrote) with --bag-out."""
    folder = tmp_path_factory.mktemp("bagout")
    source = write_bag(folder / "in", drive_frames(12), [ImageTopic("/camera/image_raw/compressed", "jpeg")])
    out = folder / "out.mcap"
    code = detect_main(["--source", f"bag://{source}", "--backend", "onnxruntime", "--threads", "1",
                        "--bag-out", str(out), "--bag-frames", "every", "--events", str(folder / "events.jsonl"),
                        "--detections", str(folder / "dets.jsonl"), "--no-health"])  # fmt: skip
    assert code == 0
    types, messages = read_back(out)
    events = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    dets = [json.loads(x) for x in (folder / "dets.jsonl").read_text().splitlines()]
    return {"out": out, "types": types, "messages": messages, "events": events, "dets": dets}


def test_bag_out_holds_one_detection_array_per_processed_frame(detected: dict) -> None:
    assert detected["types"] == {
        "/stopsign/detections": "vision_msgs/msg/Detection2DArray",
        "/stopsign/annotations": "foxglove_msgs/msg/ImageAnnotations",
        "/stopsign/events": "std_msgs/msg/String",
        "/stopsign/image/compressed": "sensor_msgs/msg/CompressedImage",
    }
    stopped = next(e for e in detected["events"] if e["event"] == "stopped")
    arrays = [(t, m) for topic, t, m in detected["messages"] if topic == "/stopsign/detections"]
    assert len(arrays) == stopped["processed"] == 12
    expected_stamps = [T0_NS + i * STEP_NS for i in range(12)]
    assert [stamp(m) for _, m in arrays] == expected_stamps  # the vehicle's stamps, not the computer's clock
    assert [t for t, _ in arrays] == expected_stamps
    # The same boxes as the JSON-lines detections, as centre + size.
    for (_, msg), line in zip(arrays, detected["dets"]):
        assert len(msg.detections) == len(line["detections"])
        for det, want in zip(msg.detections, line["detections"]):
            x1, y1, x2, y2 = want["xyxy"]
            assert det.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=0.01)
            assert det.bbox.size_y == pytest.approx(y2 - y1, abs=0.01)
            assert det.results[0].hypothesis.class_id == want["class"]
            assert det.results[0].hypothesis.score == pytest.approx(want["score"], abs=1e-4)
    assert sum(len(m.detections) for _, m in arrays) > 0  # the approach has a sign to find


def test_annotations_images_and_events_ride_along(detected: dict) -> None:
    messages = detected["messages"]
    notes = [m for topic, _, m in messages if topic == "/stopsign/annotations"]
    arrays = [m for topic, _, m in messages if topic == "/stopsign/detections"]
    assert [len(n.points) for n in notes] == [len(a.detections) for a in arrays]
    assert all(p.type == 2 and len(p.points) == 4 for n in notes for p in n.points)  # closed rectangles
    images = [m for topic, _, m in messages if topic == "/stopsign/image/compressed"]
    assert [stamp(m) for m in images] == [stamp(a) for a in arrays]
    decoded = cv2.imdecode(np.asarray(images[0].data), cv2.IMREAD_COLOR)
    assert decoded.shape == (360, 640, 3) and images[0].format == "jpeg"
    in_bag = [json.loads(m.data) for topic, _, m in messages if topic == "/stopsign/events"]
    kinds = [e["event"] for e in in_bag]
    assert "stop_sign_ahead" in kinds
    assert [e for e in in_bag if e["event"] != "stopped"] == [e for e in detected["events"] if e["event"] in kinds
                                                              and e["event"] != "stopped"]  # fmt: skip
    ahead = next(e for e in in_bag if e["event"] == "stop_sign_ahead")
    ahead_time = next(
        t for topic, t, m in messages if topic == "/stopsign/events" and "stop_sign_ahead" in m.data
    )
    assert ahead_time == ahead["timestamp_ns"] == T0_NS + ahead["frame"] * STEP_NS


def result(index: int, image: np.ndarray, boxes: int = 1) -> FrameResult:
    xyxy = np.tile(np.array([[10, 20, 50, 80]], np.float32), (boxes, 1))
    dets = Detections(xyxy, np.full(boxes, 0.9, np.float32), np.zeros(boxes, np.int64))
    return FrameResult(Frame(index, T0_NS + index * STEP_NS, 0, image), dets, FrameTimings())


def test_frames_events_keeps_only_the_frames_that_raised_a_tracker_event(tmp_path: Path) -> None:
    sink = BagSink(BagSinkConfig(str(tmp_path / "e.mcap"), frames="events"), ["stop_sign"])
    sink.open()
    image = make_frames(1, 64, 48)[0]
    for i in range(6):
        if i == 3:
            sink.on_event({"event": "stop_sign_ahead", "frame": 3, "timestamp_ns": T0_NS + 3 * STEP_NS})
        sink.on_frame(result(i, image))
    rejected = FrameResult(Frame(6, T0_NS + 6 * STEP_NS, 0, image), None, FrameTimings(), rejected="black")
    sink.on_frame(rejected)
    sink.close()
    _, messages = read_back(tmp_path / "e.mcap")
    images = [stamp(m) for topic, _, m in messages if topic == "/stopsign/image/compressed"]
    assert images == [T0_NS + 3 * STEP_NS]
    assert (
        sum(topic == "/stopsign/detections" for topic, _, _ in messages) == 6
    )  # none for the rejected frame
    assert not (tmp_path / "e.mcap.partial").exists()


def test_a_slow_disk_loses_queued_items_and_never_holds_the_loop(tmp_path: Path) -> None:
    sink = BagSink(BagSinkConfig(str(tmp_path / "q.mcap"), frames="every", queue_size=2), ["stop_sign"])
    sink.open()
    big = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), np.uint8)  # slow to JPEG-encode
    offered = 40
    for i in range(offered):
        sink.on_frame(result(i, big))
    sink.close()
    _, messages = read_back(tmp_path / "q.mcap")
    written = sum(topic == "/stopsign/detections" for topic, _, _ in messages)
    # A hook that waited for the writer would never drop: every drop is a wait the loop did not do.
    assert sink.dropped > 0
    assert written + sink.dropped == offered


def test_an_existing_bag_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "x.mcap").write_bytes(b"keep me")
    sink = BagSink(BagSinkConfig(str(tmp_path / "x.mcap")), ["stop_sign"])
    with pytest.raises(FileExistsError, match="x.mcap: exists already"):
        sink.open()
    assert (tmp_path / "x.mcap").read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="--bag-frames must be one of"):
        BagSinkConfig("y.mcap", frames="some")


def test_a_rosbag2_folder_when_the_path_is_not_mcap(tmp_path: Path) -> None:
    sink = BagSink(BagSinkConfig(str(tmp_path / "run")), ["stop_sign"])
    sink.open()
    sink.on_frame(result(0, make_frames(1)[0], boxes=0))
    sink.close()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metadata.yaml", "run.mcap"]
    _, messages = read_back(tmp_path / "run")
    arrays = [m for topic, _, m in messages if topic == "/stopsign/detections"]
    assert len(arrays) == 1 and len(arrays[0].detections) == 0


def test_a_camera_run_is_stamped_on_the_wall_clock_events_with_their_frames(tmp_path: Path) -> None:
    """A camera's stream time starts near 0: the bag gets capture times on the wall clock, as
    ``ros2 bag record`` on the vehicle stamps, and a tracker event its frame's time."""
    sink = BagSink(BagSinkConfig(str(tmp_path / "cam.mcap")), ["stop_sign"])
    sink.open()
    image = make_frames(1)[0]
    before = time.time_ns()
    for i in range(4):
        if i == 2:
            sink.on_event({"event": "stop_sign_ahead", "frame": 2, "timestamp_ns": 2 * STEP_NS})
        mono = time.monotonic_ns()
        frame = Frame(i, i * STEP_NS, mono, image)
        sink.on_frame(FrameResult(frame, result(i, image).detections, FrameTimings()))
        time.sleep(STEP_NS / 1e9)  # a 15 fps camera: stream time and capture time advance together
    sink.close()
    _, messages = read_back(tmp_path / "cam.mcap")
    stamps = [stamp(m) for topic, _, m in messages if topic == "/stopsign/detections"]
    assert before - 10**9 < stamps[0] < time.time_ns()
    assert stamps == sorted(stamps)
    ahead_time = next(t for topic, t, m in messages if topic == "/stopsign/events")
    assert stamps[1] < ahead_time < stamps[3]  # at its frame's capture (frame 2), give or take the jitter
