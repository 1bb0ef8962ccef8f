"""A real RTSP camera (GStreamer's RTSP server in its own process) that fails under a real GstSource.

The server is killed (power cut), paused (SIGSTOP: socket open, no data), replaced by a process
that answers with random bytes, and started again; the source must report the stall promptly,
come back promptly, and keep one timeline across the outage.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import make_source, open_source
from tests.edge.helpers import requires_gstreamer, requires_rtsp_server
from tests.edge.sources.test_gst_source import Recorder

pytestmark = [pytest.mark.gstreamer, requires_gstreamer, requires_rtsp_server]

VIDEO = Path(__file__).resolve().parents[3] / "samples" / "drives" / "day_approach" / "video.mp4"


class Camera:
    def __init__(self, port: int) -> None:
        self.port, self.epoch = port, time.time()
        self.process: subprocess.Popen | None = None

    def start(self, garbage: bool = False) -> None:
        command = [sys.executable, "-m", "stopsign.edge.sources.rtsp_camera", "--port", str(self.port)]
        command += (
            ["--garbage"]
            if garbage
            else ["--video", str(VIDEO), "--hold-frame", "40", "--epoch", str(self.epoch)]
        )
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert "serving" in self.process.stdout.readline()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/drive"


@pytest.fixture
def camera() -> Iterator[Camera]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cam = Camera(port)
    cam.start()
    yield cam
    if cam.process.poll() is None:
        cam.process.send_signal(signal.SIGCONT)
        cam.kill()


def read_until(source, events: Recorder, kind: str, limit_s: float) -> list:
    """Frames read until the status event ``kind`` has been reported and a frame followed it."""
    frames, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frame = source.read(0.05)
        if frame is not None:
            frames.append(frame)
            if kind in events.kinds():
                return frames
        elif kind in events.kinds() and kind != "source_restored":
            return frames
    raise AssertionError(f"no {kind} within {limit_s} s: {events.kinds()}")


def test_rtsp_is_an_endless_live_source(camera: Camera) -> None:
    source = make_source(camera.url, SourceOptions(), Recorder())
    assert source.options.endless  # end-of-stream from a camera is a fault, not the end


def test_killed_camera_is_reported_and_followed_back_with_one_timeline(camera: Camera) -> None:
    events = Recorder()
    source = open_source(camera.url, SourceOptions(), events)
    try:
        assert source.live
        before = [source.read(2.0) for _ in range(5)]
        camera.kill()
        killed = time.monotonic_ns()
        read_until(source, events, "source_stalled", 3.0)
        stalled_after_s = (time.monotonic_ns() - killed) / 1e9
        time.sleep(1.0)
        camera.start()
        back = time.monotonic_ns()
        after = read_until(source, events, "source_restored", 5.0)
        first_after_s = (after[-1].monotonic_ns - back) / 1e9
    finally:
        source.close()
    before = [f for f in before if f is not None]
    assert stalled_after_s < 1.0, events.events
    assert first_after_s < 2.0, events.events
    first_new = after[-1]
    last_old = before[-1]
    # The rebuilt pipeline's timestamps restart near zero; the source continues its timeline.
    assert first_new.gap_ns > 1e9
    assert first_new.pts_ns > last_old.pts_ns
    assert abs((first_new.pts_ns - last_old.pts_ns) - (first_new.monotonic_ns - last_old.monotonic_ns)) < 5e7
    assert all(f.gap_ns == 0 for f in before)


def test_paused_camera_trips_the_watchdog_and_resumes(camera: Camera) -> None:
    events = Recorder()
    source = open_source(camera.url, SourceOptions(), events)
    try:
        for _ in range(3):
            source.read(2.0)
        camera.process.send_signal(signal.SIGSTOP)
        read_until(source, events, "source_stalled", 3.0)
        stalled = dict(events.events)["source_stalled"]
        camera.process.send_signal(signal.SIGCONT)
        read_until(source, events, "source_restored", 8.0)
    finally:
        source.close()
    assert stalled["reason"] == "no frame" and 0.5 <= stalled["since_last_frame_s"] < 1.0, stalled


def test_garbage_on_the_port_is_an_error_then_the_camera_comes_back(camera: Camera) -> None:
    events = Recorder()
    source = open_source(camera.url, SourceOptions(), events)
    try:
        source.read(2.0)
        camera.kill()
        camera.start(garbage=True)
        read_until(source, events, "source_stalled", 3.0)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and "source_rebuild_failed" not in events.kinds():
            source.read(0.05)
        camera.kill()
        camera.start()
        read_until(source, events, "source_restored", 8.0)
    finally:
        source.close()
    assert "source_rebuild_failed" in events.kinds(), (
        events.kinds()
    )  # the impostor was not taken for a camera
