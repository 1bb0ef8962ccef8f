"""GstSource with real GStreamer pipelines: live and ordered delivery, EOS, stall + rebuild, open errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stopsign.edge.sources.base import SourceOpenError, SourceOptions
from stopsign.edge.sources.factory import open_source
from tests.edge.helpers import requires_gstreamer

pytestmark = [pytest.mark.gstreamer, requires_gstreamer]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        self.events.append((kind, fields))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def read_all(source, limit_s: float = 10.0) -> list:
    frames, deadline = [], time.monotonic() + limit_s
    while not source.eos and time.monotonic() < deadline:
        frame = source.read(0.1)
        if frame is not None:
            frames.append(frame)
    return frames


def test_ordered_test_source_delivers_every_frame_then_eos() -> None:
    source = open_source("test://?size=66x50&live=0&num-buffers=12", SourceOptions(), Recorder())
    try:
        assert not source.live
        frames = read_all(source)
    finally:
        source.close()
    assert source.eos
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (50, 66, 3)  # 66*3 bytes rows are padded to 200: strides honoured
    pts = [f.pts_ns for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 12


def test_live_source_keeps_only_the_newest_frame_and_counts_drops() -> None:
    source = open_source("test://?size=64x48&fps=100", SourceOptions(), Recorder())
    try:
        assert source.live
        source.read(1.0)
        time.sleep(0.5)  # the consumer is busy: ~50 frames arrive meanwhile
        frame = source.read(1.0)
        age_ms = (time.monotonic_ns() - frame.monotonic_ns) / 1e6
    finally:
        source.close()
    assert source.dropped >= 30
    assert age_ms < 50  # the newest frame, not the oldest of a backlog


def test_stalled_live_source_is_rebuilt_and_reported() -> None:
    # identity drop-probability=1 makes the real pipeline stop delivering with no bus message,
    # like an unplugged USB camera; the rebuilt pipeline starts with the default (0) again.
    events = Recorder()
    options = SourceOptions(stall_timeout_s=0.3, backoff_initial_s=0.2)
    source = open_source(
        "gst://videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! identity name=gate",
        options,
        events,
    )
    try:
        assert source.read(1.0) is not None
        source.pipeline.get_by_name("gate").set_property("drop-probability", 1.0)
        deadline, restored_frame = time.monotonic() + 5, None
        while time.monotonic() < deadline:
            frame = source.read(0.05)
            if "source_restored" in events.kinds() and frame is not None:
                restored_frame = frame
                break
    finally:
        source.close()
    kinds = events.kinds()
    assert kinds[:3] == ["source_stalled", "source_rebuilding", "source_restored"], kinds
    assert events.events[0][1]["since_last_frame_s"] >= 0.3
    assert restored_frame is not None and source.state == "closed"


def test_rebuild_backoff_doubles_while_the_source_stays_down(tmp_path: Path) -> None:
    # A camera whose every rebuild fails: a v4l2 device that disappears after opening is modelled
    # by a launch line whose rebuilt pipelines never deliver (drop everything from the start).
    events = Recorder()
    options = SourceOptions(stall_timeout_s=0.2, open_timeout_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.4)
    source = open_source(
        "gst://videotestsrc is-live=true ! video/x-raw,width=32,height=24,framerate=30/1 ! identity name=gate",
        options,
        events,
    )
    try:
        source.read(1.0)
        # Every pipeline built from now on drops all buffers: patch the candidate's line for rebuilds.
        source._candidate = type(source._candidate)(
            "broken", source._candidate.line.replace("identity name=gate", "identity drop-probability=1.0")
        )
        source.pipeline.get_by_name("gate").set_property("drop-probability", 1.0)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            source.read(0.05)
    finally:
        source.close()
    rebuilds = [f["after_s"] for k, f in events.events if k == "source_rebuilding"]
    assert events.kinds()[0] == "source_stalled"
    assert "source_rebuild_failed" in events.kinds() and "source_restored" not in events.kinds()
    assert rebuilds[:3] == [0.1, 0.2, 0.4] and all(d == 0.4 for d in rebuilds[3:])


def test_missing_device_fails_fast_with_path_and_gstreamer_error() -> None:
    start = time.monotonic()
    with pytest.raises(SourceOpenError) as info:
        open_source("/dev/video97", SourceOptions(), Recorder())
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "/dev/video97" in message and "Cannot identify device" in message


def test_invalid_launch_line_names_the_element() -> None:
    with pytest.raises(SourceOpenError, match='no element "nosuchelement"'):
        open_source("gst://nosuchelement ! videoconvert", SourceOptions(), Recorder())


def test_recorded_drive_frames_carry_the_recorded_timestamps(tmp_path: Path) -> None:
    writer = cv2.VideoWriter(str(tmp_path / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(5):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    lines = [{"index": i, "pts_ns": 1000 + i * 100_000_000, "monotonic_ns": 77 + i} for i in range(5)]
    (tmp_path / "frames.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "meta.json").write_text('{"fps": 10}')
    source = open_source(f"drive://{tmp_path}", SourceOptions(), Recorder())
    try:
        frames = read_all(source)
    finally:
        source.close()
    assert [(f.pts_ns, f.monotonic_ns) for f in frames] == [(x["pts_ns"], x["monotonic_ns"]) for x in lines]


def test_drive_with_bad_frames_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "video.mkv").write_bytes(b"")
    (tmp_path / "frames.jsonl").write_text('{"index": 0, "pts_ns": 0, "monotonic_ns": 0}\n{"index": 1}\n')
    with pytest.raises(SourceOpenError, match=r"frames.jsonl:2"):
        open_source(f"drive://{tmp_path}", SourceOptions(), Recorder())
