"""Drive folders <-> ROS bags: a sample drive as a bag replays to its expected outputs, and back."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.cli.record import main as record_main
from stopsign.edge.cli.replay import main as replay_main
from stopsign.edge.replay.bag_convert import bag_to_drive, read_bag_drive
from stopsign.edge.replay.drive import DriveError, open_drive, read_frames
from tests.edge.helpers import requires_gstreamer
from tests.edge.rosbags_writer import STEP_NS, T0_NS, AnyReader, ImageTopic, make_frames, write_bag

REPO = Path(__file__).resolve().parents[3]
DRIVE = REPO / "samples" / "drives" / "day_approach"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``edge-record convert`` of the bundled day_approach drive into one MCAP file."""
    out = tmp_path_factory.mktemp("convert") / "day.mcap"
    assert record_main(["convert", str(DRIVE), str(out)]) == 0
    return out


def test_the_bag_holds_the_drive_keyed_by_stamp(converted: Path) -> None:
    frames = [json.loads(x) for x in (DRIVE / "frames.jsonl").read_text().splitlines()]
    labels = [json.loads(x) for x in (DRIVE / "labels.jsonl").read_text().splitlines()]
    meta = json.loads((DRIVE / "meta.json").read_text())
    with AnyReader([converted]) as reader:  # rosbags' reader, the bag's own schemas
        types = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        messages = [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    assert types == {
        "/camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", 60),
        "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", 60),
        "/stopsign/labels": ("vision_msgs/msg/Detection2DArray", 60),
        "/stopsign/drive_meta": ("std_msgs/msg/String", 1),
    }

    def stamps(topic: str) -> list[int]:
        return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for t, _, m in messages if t == topic]

    capture_times = [f["monotonic_ns"] for f in frames]
    assert stamps("/camera/image_raw/compressed") == capture_times
    assert stamps("/stopsign/labels") == capture_times
    assert [t for topic, t, _ in messages if topic == "/camera/image_raw/compressed"] == capture_times
    info = next(m for t, _, m in messages if t == "/camera/camera_info")
    assert (info.width, info.height) == (640, 360)
    assert list(info.k[[0, 4, 2, 5]]) == pytest.approx(
        [meta["intrinsics"][k] for k in ("fx", "fy", "cx", "cy")]
    )
    boxes = [m for t, _, m in messages if t == "/stopsign/labels"]
    for label, msg in zip(labels, boxes):
        assert len(msg.detections) == len(label["boxes"])
    stored = next(m for t, _, m in messages if t == "/stopsign/drive_meta")
    assert json.loads(stored.data) == meta
    assert sorted(p.name for p in converted.with_name("day.mcap.expected").iterdir()) == sorted(
        p.name for p in (DRIVE / "expected").iterdir()
    )


def test_a_sample_drive_as_a_bag_replays_to_its_expected_outputs(converted: Path, capsys) -> None:
    """The bag gives the same detections, tracks and events as the drive folder (PNG is lossless)."""
    drive_expected = next(p for p in (DRIVE / "expected").glob("*.jsonl") if p.name.count(".") == 1)
    code = replay_main([str(converted), "--backend", "onnxruntime", "--expected", str(drive_expected)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"matches {drive_expected.name} (60 frames, 2 events)" in out
    assert '"event_frame": 2' in out  # labels from /stopsign/labels, matched by stamp


def test_bag_back_to_a_drive_keeps_labels_intrinsics_and_times(
    converted: Path, tmp_path: Path, capsys
) -> None:
    back = tmp_path / "day_again"
    assert record_main(["convert", str(converted), str(back)]) == 0
    original = [json.loads(x) for x in (DRIVE / "frames.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (back / "frames.jsonl").read_text().splitlines()]
    assert [f["monotonic_ns"] for f in again] == [f["monotonic_ns"] for f in original]
    assert (back / "labels.jsonl").read_text() == (DRIVE / "labels.jsonl").read_text()
    meta = json.loads((back / "meta.json").read_text())
    assert meta["intrinsics"] == json.loads((DRIVE / "meta.json").read_text())["intrinsics"]
    # Lossless both ways (PNG in the bag, FFV1 back): the very pixels the drive's video decodes to,
    # so the drive made from the bag replays as the original does.
    for got, want in zip(read_frames(open_drive(back)), read_frames(open_drive(DRIVE)), strict=True):
        assert np.array_equal(got, want)
    assert sorted(p.name for p in (back / "expected").iterdir()) == sorted(
        p.name for p in (DRIVE / "expected").iterdir()
    )


def test_a_ros1_bag_from_a_vehicle_becomes_a_drive(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "vehicle.bag", make_frames(5), [ImageTopic("/cam/image_raw", "bgr8")], "ros1")
    summary = bag_to_drive(bag, tmp_path / "drive")
    assert (summary.frames, summary.labels) == (5, 0)
    frames = [json.loads(x) for x in (tmp_path / "drive" / "frames.jsonl").read_text().splitlines()]
    assert [f["monotonic_ns"] for f in frames] == [T0_NS + i * STEP_NS for i in range(5)]
    assert [f["pts_ns"] for f in frames] == [i * STEP_NS for i in range(5)]
    assert not (tmp_path / "drive" / "labels.jsonl").exists()


def test_conversion_errors_name_the_input(tmp_path: Path, capsys) -> None:
    two = write_bag(
        tmp_path / "two",
        make_frames(2),
        [ImageTopic("/a/image_raw", "bgr8"), ImageTopic("/b/image_raw", "bgr8")],
    )
    with pytest.raises(DriveError, match=r"several image topics \['/a/image_raw', '/b/image_raw'\]"):
        read_bag_drive(two)
    assert record_main(["convert", str(two), str(tmp_path / "d")]) == 2
    assert "several image topics" in capsys.readouterr().err
    assert record_main(["convert", str(two), str(tmp_path / "d"), "--topic", "/b/image_raw"]) == 0
    shutil.rmtree(tmp_path / "d")
    assert record_main(["convert", str(DRIVE), str(two)]) == 2  # never over an existing bag
    assert "exists already" in capsys.readouterr().err


@requires_gstreamer
def test_edge_record_format_mcap_writes_jpeg_and_camera_info(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cam.mcap"
    before = time.time_ns()
    code = record_main(["--camera", "test://?size=320x240&fps=30&num-buffers=12&live=0", "--format", "mcap",
                        "--out", str(out), "--focal-px", "300", "--jpeg-quality", "80"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with AnyReader([out]) as reader:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        messages = [(c.topic, reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages()]
    assert counts == {"/camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", 12),
                      "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", 12)}  # fmt: skip
    stamps = [
        m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for t, m in messages if t.endswith("compressed")
    ]
    assert (
        stamps == sorted(stamps) and before - 10**9 < stamps[0] < time.time_ns()
    )  # wall-clock capture times
    info = next(m for t, m in messages if t == "/camera/camera_info")
    assert (info.width, info.height, info.k[0], info.k[2]) == (320, 240, 300.0, 160.0)
    assert f"recorded 12 frames (rosbag2 MCAP, JPEG) to {out}" in capsys.readouterr().out
