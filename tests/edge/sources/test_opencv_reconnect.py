"""The OpenCV fallback source treats a camera's end of stream as a fault: reported, reopened with a
backoff, and the first frame after it carries the outage; a file still ends at its end."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.opencv import OpenCvSource

DRIVE_VIDEO = Path(__file__).resolve().parents[3] / "samples" / "drives" / "day_approach" / "video.mp4"


def read_all(source: OpenCvSource, limit: int, timeout_s: float = 0.05) -> list:
    frames = []
    deadline = time.monotonic() + 30
    while len(frames) < limit and not source.eos and time.monotonic() < deadline:
        frame = source.read(timeout_s)
        if frame is not None:
            frames.append(frame)
    return frames


def test_a_file_ends_at_its_end() -> None:
    source = OpenCvSource(str(DRIVE_VIDEO), live=False)
    source.open()
    frames = read_all(source, 1000)
    assert source.eos and len(frames) == 60 and source.state == "eos"
    source.close()


def test_a_camera_that_vanishes_is_reopened_and_the_gap_is_carried(tmp_path: Path) -> None:
    """A 'camera' whose stream ends and whose device disappears for a while, then comes back."""
    device = tmp_path / "camera.mp4"
    shutil.copy(DRIVE_VIDEO, device)
    events: list[tuple[str, dict]] = []
    source = OpenCvSource(
        str(device), live=True, options=SourceOptions(backoff_initial_s=0.05, backoff_max_s=0.2, endless=True),
        report=lambda kind, fields: events.append((kind, fields)),
    )  # fmt: skip
    source.open()
    first = read_all(source, 60)
    assert len(first) == 60 and not events
    device.unlink()  # unplugged: the next read fails, and so do the reopen attempts
    assert read_all(source, 1, timeout_s=0.3) == []
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "source_stalled" and kinds.count("source_rebuilding") >= 2
    assert not source.eos and source.state in ("stalled", "rebuilding")
    delays = [fields["after_s"] for kind, fields in events if kind == "source_rebuilding"]
    assert delays == sorted(delays) and max(delays) <= 0.2  # doubling, capped
    shutil.copy(DRIVE_VIDEO, device)  # plugged back in
    again = read_all(source, 5)
    assert len(again) == 5 and source.state == "running"
    assert again[0].index == 60 and again[0].gap_ns > 0  # the outage travels with the frame
    assert again[1].gap_ns == 0
    restored = [fields for kind, fields in events if kind == "source_restored"]
    assert len(restored) == 1 and restored[0]["attempts"] >= 2
    source.close()
    assert source.state == "closed"
