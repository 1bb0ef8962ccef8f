"""The bag source on bags written by rosbags' own writers: rosbag2 MCAP and sqlite3, ROS 1."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.sources.bag import BagOptions, BagSource, bag_camera_meta
from stopsign.edge.sources.base import SourceOpenError
from stopsign.edge.sources.factory import make_source
from stopsign.edge.sources.uri import parse_source_uri
from tests.edge.rosbags_writer import ROS2, STEP_NS, T0_NS, ImageTopic, make_frames, write_bag

COMPRESSED = "/camera/image_raw/compressed"
RAW = "/camera/image_raw"


def read_all(source: BagSource) -> list:
    frames = []
    while (frame := source.read(1.0)) is not None:
        frames.append(frame)
    assert source.eos
    return frames


def open_bag(path: Path, events: list | None = None, **options) -> BagSource:
    sink = events if events is not None else []
    source = BagSource(path, BagOptions(**options), lambda kind, fields: sink.append((kind, fields)))
    source.open()
    return source


# (storage, image kind, mean abs error allowed against the written BGR frame)
CASES = [
    ("mcap", "jpeg", 6.0),
    ("mcap", "png", 0.0),
    ("mcap", "bgr8", 0.0),
    ("mcap", "rgb8", 0.0),
    ("mcap", "mono8", 0.0),  # compared with the grey image, as three equal channels
    ("mcap", "yuv422", 4.0),  # chroma at half width
    ("mcap", "yuyv", 4.0),
    ("mcap", "bayer_rggb8", 12.0),  # demosaicked
    ("sqlite3", "jpeg", 6.0),
    ("sqlite3", "bgr8", 0.0),
    ("ros1", "jpeg", 6.0),
    ("ros1", "bayer_rggb8", 12.0),
]


@pytest.mark.parametrize(("storage", "kind", "tolerance"), CASES, ids=[f"{s}-{k}" for s, k, _ in CASES])
def test_reads_every_frame_with_its_stamp_decoded_to_bgr(
    tmp_path: Path, storage: str, kind: str, tolerance: float
) -> None:
    frames = make_frames(4)
    topic = COMPRESSED if kind in ("jpeg", "png") else RAW
    path = write_bag(
        tmp_path / ("b.bag" if storage == "ros1" else "b"), frames, [ImageTopic(topic, kind)], storage
    )
    source = open_bag(path)
    got = read_all(source)
    assert [f.pts_ns for f in got] == [T0_NS + i * STEP_NS for i in range(4)]
    # When each frame left the bag, on this computer's clock (the loop's frame log and edge-bench).
    reads = [f.monotonic_ns for f in got]
    assert reads == sorted(reads) and 0 < reads[0] <= time.monotonic_ns()
    assert [f.index for f in got] == [0, 1, 2, 3]
    for frame, original in zip(got, frames):
        assert frame.image.shape == original.shape and frame.image.dtype == np.uint8
        if kind == "mono8":
            grey = cv2.cvtColor(original, cv2.COLOR_BGR2GRAY)
            assert np.array_equal(frame.image, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        else:
            assert np.abs(frame.image.astype(float) - original).mean() <= tolerance, kind
    assert source.fps == pytest.approx(15.0, rel=1e-3)
    source.close()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3", "ros1"])
def test_camera_info_gives_focal_length_and_principal_point(tmp_path: Path, storage: str) -> None:
    path = write_bag(tmp_path / ("b.bag" if storage == "ros1" else "b"), make_frames(2, 96, 64),
                     [ImageTopic(COMPRESSED, "jpeg")], storage, focal=640.0)  # fmt: skip
    meta = bag_camera_meta(path)
    assert meta == {
        "width": 96,
        "height": 64,
        "intrinsics": {"fx": 640.0, "fy": 640.0, "cx": 48.0, "cy": 32.0},
    }
    source = open_bag(path)
    read_all(source)
    assert source.camera == meta


def test_without_camera_info_there_are_no_intrinsics(tmp_path: Path) -> None:
    path = write_bag(tmp_path / "b", make_frames(2), [ImageTopic(COMPRESSED, "jpeg")], camera_info=None)
    assert bag_camera_meta(path) is None


def test_several_image_topics_need_a_choice_and_the_error_lists_them(tmp_path: Path) -> None:
    topics = [ImageTopic("/front/image_raw/compressed", "jpeg"), ImageTopic("/rear/image_raw", "bgr8")]
    path = write_bag(tmp_path / "b", make_frames(3), topics)
    with pytest.raises(
        SourceOpenError, match=r"several image topics \['/front/image_raw/compressed', '/rear/image_raw'\]"
    ):
        open_bag(path)
    front = read_all(open_bag(path, topic="/front/image_raw/compressed"))
    rear = read_all(open_bag(path, topic="/rear/image_raw"))
    assert len(front) == len(rear) == 3
    assert np.abs(rear[1].image.astype(int) - make_frames(3)[1]).max() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"topic": "/nope"}, r"no topic /nope; image topics: \['/camera/image_raw/compressed'\]"),
        (
            {"topic": "/camera/camera_info"},
            r"/camera/camera_info is sensor_msgs/msg/CameraInfo, not an image",
        ),
        ({"info": "/nope/info"}, r"no sensor_msgs/msg/CameraInfo topic /nope/info"),
    ],
)
def test_a_missing_or_wrong_topic_is_named(tmp_path: Path, options: dict, message: str) -> None:
    path = write_bag(tmp_path / "b", make_frames(2), [ImageTopic(COMPRESSED, "jpeg")])
    with pytest.raises(SourceOpenError, match=message):
        open_bag(path, **options)


def test_empty_corrupt_and_truncated_bags_are_clear_open_errors(tmp_path: Path) -> None:
    no_topics = write_bag(tmp_path / "no_topics", [], [], camera_info=None)
    with pytest.raises(SourceOpenError, match="no image topic .* topics: none"):
        open_bag(no_topics)
    no_messages = write_bag(tmp_path / "no_messages", [], [ImageTopic(COMPRESSED, "jpeg")])
    with pytest.raises(SourceOpenError, match=f"no_messages: no messages on {COMPRESSED} \\(an empty bag\\)"):
        open_bag(no_messages)
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, np.uint8).tobytes())
    with pytest.raises(SourceOpenError, match="garbage.mcap: not a readable ROS bag"):
        open_bag(garbage)
    whole = write_bag(tmp_path / "whole", make_frames(6), [ImageTopic(COMPRESSED, "jpeg")])
    data = (whole / "whole.mcap").read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SourceOpenError, match="cut.mcap: not a readable ROS bag .*cut short"):
        open_bag(cut)
    with pytest.raises(SourceOpenError, match="no such bag"):
        open_bag(tmp_path / "absent.mcap")


def _bag_with_bad_messages(tmp_path: Path) -> Path:
    """Five frames on one Image topic: frame 1 has an unknown encoding, frame 3 a stamp before
    frame 2's; and a CompressedImage topic whose frame 2 is not an image."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from tests.edge.rosbags_writer import image_message

    frames = make_frames(5)
    stamps = [T0_NS + i * STEP_NS for i in range(5)]
    stamps[3] = stamps[2] - 1000  # a driver clock stepping back
    path = tmp_path / "bad"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        raw = writer.add_connection(RAW, "sensor_msgs/msg/Image", typestore=ROS2)
        jpeg = writer.add_connection(COMPRESSED, "sensor_msgs/msg/CompressedImage", typestore=ROS2)
        for i, (image, stamp) in enumerate(zip(frames, stamps)):
            msg = image_message(ROS2, image, "bgr8", stamp)
            if i == 1:
                msg.encoding = "16UC1"
            writer.write(raw, T0_NS + i * STEP_NS, ROS2.serialize_cdr(msg, msg.__msgtype__))
            msg = image_message(ROS2, image, "jpeg", T0_NS + i * STEP_NS)
            if i == 2:
                msg.data = np.frombuffer(b"\xff\xd8not a jpeg at all" * 20, np.uint8)
            writer.write(jpeg, T0_NS + i * STEP_NS, ROS2.serialize_cdr(msg, msg.__msgtype__))
    return path


def test_bad_messages_are_rejected_by_topic_and_stamp_and_nothing_else_is_lost(tmp_path: Path) -> None:
    path = _bag_with_bad_messages(tmp_path)
    events: list = []
    got = read_all(open_bag(path, events, topic=RAW))
    assert [f.pts_ns for f in got] == [T0_NS, T0_NS + 2 * STEP_NS, T0_NS + 4 * STEP_NS]
    reasons = [fields["reason"] for kind, fields in events if kind == "frame_rejected"]
    assert reasons[0] == (f"{RAW} at stamp {T0_NS + STEP_NS}: unknown encoding '16UC1' "
                          "(known: bgr8, rgb8, mono8, bgra8, rgba8, yuv422, uyvy, yuv422_yuy2, yuyv, "
                          "bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8)")  # fmt: skip
    assert reasons[1].startswith(f"{RAW} at stamp {T0_NS + 2 * STEP_NS - 1000}: stamp not after the previous")
    assert len(reasons) == 2
    assert all(fields["topic"] == RAW for kind, fields in events)

    events.clear()
    got = read_all(open_bag(path, events, topic=COMPRESSED))
    assert len(got) == 4
    assert events == [("frame_rejected", {"reason": f"{COMPRESSED} at stamp {T0_NS + 2 * STEP_NS}: 380 bytes of "
                       "'jpeg' data do not decode", "topic": COMPRESSED, "stamp_ns": T0_NS + 2 * STEP_NS})]  # fmt: skip


def test_realtime_paces_frames_by_their_stamps(tmp_path: Path) -> None:
    stamps = [T0_NS + i * 200_000_000 for i in range(5)]  # 5 fps: 0.8 s from the first to the last
    path = write_bag(tmp_path / "b", make_frames(5), [ImageTopic(COMPRESSED, "jpeg")], stamps=stamps)
    spans = {}
    for realtime in (False, True):
        source = open_bag(path, realtime=realtime)
        start = time.monotonic()
        frames = read_all(source)
        spans[realtime] = time.monotonic() - start
        assert [f.pts_ns for f in frames] == stamps
    assert spans[True] >= 0.8 > spans[False]


@pytest.mark.parametrize(
    ("text", "target", "options"),
    [
        ("bag:///data/run.mcap?topic=/cam/image/compressed&info=/cam/info&realtime=1", "/data/run.mcap",
         {"topic": "/cam/image/compressed", "info": "/cam/info", "realtime": "1"}),
        ("bag://relative/run", "relative/run", {}),
    ],
)  # fmt: skip
def test_bag_uris_parse(text: str, target: str, options: dict) -> None:
    uri = parse_source_uri(text)
    assert (uri.kind, uri.target, uri.options) == ("bag", target, options)
    assert BagOptions.from_query(uri.options).realtime == (options.get("realtime") == "1")


def test_plain_paths_to_bags_are_bags(tmp_path: Path) -> None:
    folder = write_bag(tmp_path / "run2", make_frames(2), [ImageTopic(COMPRESSED, "jpeg")], "sqlite3")
    mcap = write_bag(tmp_path / "run", make_frames(2), [ImageTopic(COMPRESSED, "jpeg")]) / "run.mcap"
    ros1 = write_bag(tmp_path / "run.bag", make_frames(2), [ImageTopic(COMPRESSED, "jpeg")], "ros1")
    for path in (folder, mcap, ros1):
        uri = parse_source_uri(str(path))
        assert uri.kind == "bag", path
        source = make_source(uri, None, lambda *_: None)  # type: ignore[arg-type]
        source.open()
        assert len(read_all(source)) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bag://", "no path after bag://"),
        ("bag://x.mcap?speed=2", r"unknown bag:// options \['speed'\]"),
        ("bag://x.mcap?realtime=yes", "realtime must be 0/1/true/false"),
        ("bag://x.mcap?topic=camera", "topic must be a topic name starting with '/'"),
    ],
)
def test_bad_bag_uris_are_named(text: str, message: str) -> None:
    from stopsign.edge.sources.uri import SourceURIError

    with pytest.raises(SourceURIError, match=message):
        parse_source_uri(text)


def test_realtime_skips_the_frames_a_slow_consumer_is_too_late_for(tmp_path: Path) -> None:
    stamps = [T0_NS + i * 50_000_000 for i in range(12)]  # 20 fps
    path = write_bag(tmp_path / "b", make_frames(12), [ImageTopic(COMPRESSED, "jpeg")], stamps=stamps)
    source = open_bag(path, realtime=True)
    assert source.live
    delivered = []
    while (frame := source.read(1.0)) is not None:
        delivered.append(frame)
        time.sleep(0.12)  # a detector at ~8 fps behind a 20 fps camera
    assert source.dropped > 0
    assert len(delivered) + source.dropped == 12
    assert [f.pts_ns for f in delivered] == sorted({f.pts_ns for f in delivered})  # in order, none twice
    # Each frame's capture time is its place on the bag's timeline, so capture age is measurable.
    first = delivered[0]
    for frame in delivered[1:]:
        assert frame.monotonic_ns - first.monotonic_ns == frame.pts_ns - first.pts_ns
