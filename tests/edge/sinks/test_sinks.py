"""Sinks: JSON lines with rotation, and failures (disk full, UDP peer gone) contained and retried."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stopsign.edge.runtime.health import FrameTimings
from stopsign.edge.sinks import (
    DetectionsSink,
    EventSink,
    FrameLogSink,
    FrameResult,
    GuardedSink,
    JsonLinesFile,
    UdpSink,
    parse_host_port,
)
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.frame import Frame

FULL = Path("/dev/full")


def result(index: int, name: str | None = None) -> FrameResult:
    dets = Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.9], np.float32), np.array([0]))
    return FrameResult(
        Frame(index, index * 10, index * 10, np.zeros((4, 4, 3), np.uint8), name), dets, FrameTimings()
    )


def test_rotation_keeps_backups(tmp_path: Path) -> None:
    out = JsonLinesFile(str(tmp_path / "log.jsonl"), max_bytes=200, backups=2)
    out.open()
    for i in range(40):
        out.write({"i": i, "pad": "x" * 20})
    out.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["log.jsonl", "log.jsonl.1", "log.jsonl.2"]
    assert all(p.stat().st_size <= 200 + 40 for p in tmp_path.iterdir())
    last = [json.loads(x)["i"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert last[-1] == 39


def test_detections_lines_for_frames_and_images(tmp_path: Path) -> None:
    sink = DetectionsSink(str(tmp_path / "d.jsonl"), ["stop_sign"])
    sink.open()
    sink.on_frame(result(3))
    sink.on_frame(result(4, name="imgs/a.jpg"))
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert lines[0] == {
        "frame": 3,
        "pts_ns": 30,
        "detections": [{"xyxy": [1.0, 2.0, 30.0, 40.0], "score": 0.9, "class": "stop_sign"}],
    }
    assert lines[1]["image"] == "imgs/a.jpg" and len(lines[1]["detections"]) == 1


def test_frame_log_record_includes_sink_time(tmp_path: Path) -> None:
    sink = FrameLogSink(str(tmp_path / "f.jsonl"), 0)
    sink.open()
    first = result(0)
    sink.on_frame(first)
    first.timings.sinks = 1.5  # known only after every sink ran
    sink.on_frame(result(1))
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1] and lines[0]["ms"]["sinks"] == 1.5


@pytest.mark.skipif(not FULL.exists(), reason="/dev/full is not available")
def test_disk_full_is_reported_disabled_and_retried() -> None:
    reports: list[tuple[str, dict[str, Any]]] = []
    now = [0.0]
    guard = GuardedSink(EventSink(str(FULL)), lambda k, f: reports.append((k, f)), clock=lambda: now[0])
    guard.open()
    guard.on_event({"event": "x"})
    assert reports[0][0] == "sink_error" and "No space left" in reports[0][1]["error"]
    guard.on_event({"event": "y"})  # disabled: not even tried
    assert len(reports) == 1 and guard.failures == 1
    now[0] = 1.5  # past the 1 s retry: reopened, fails again, next retry in 2 s
    guard.on_event({"event": "z"})
    assert [k for k, _ in reports] == ["sink_error", "sink_error"] and reports[1][1]["retry_in_s"] == 2.0
    guard.close()


def test_udp_sink_sends_json_and_survives_a_vanished_peer() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    port = receiver.getsockname()[1]
    reports: list[str] = []
    guard = GuardedSink(UdpSink(f"127.0.0.1:{port}", ["stop_sign"]), lambda k, f: reports.append(k))
    guard.open()
    guard.on_event({"event": "heartbeat"})
    guard.on_frame(result(7))
    assert json.loads(receiver.recv(65536))["event"] == "heartbeat"
    assert json.loads(receiver.recv(65536))["detections"][0]["class"] == "stop_sign"
    receiver.close()  # the peer is gone: ICMP port unreachable makes a later send fail
    for i in range(5):
        guard.on_event({"event": "e", "i": i})
    assert reports == ["sink_error"]


@pytest.mark.parametrize("text", ["localhost", "host:", ":99", "h:0", "h:70000", "h:x"])
def test_bad_udp_address(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_host_port(text)
