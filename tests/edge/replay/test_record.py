"""edge-record: real GStreamer recordings, cut by SIGKILL or a full disk, stay replayable."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stopsign.edge.cli import record as record_cli
from stopsign.edge.replay.drive import open_drive, read_frames
from stopsign.edge.replay.recorder import _FrameIndex
from tests.edge.helpers import requires_gstreamer

pytestmark = [pytest.mark.gstreamer, requires_gstreamer]
SOURCE = "test://?size=320x240&fps=30&pattern=ball"


def _record_in_subprocess(
    out: Path, duration: float, limit_bytes: int | None = None, source: str = SOURCE
) -> subprocess.Popen:
    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    code = "import sys; from stopsign.edge.cli.record import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--camera", source, "--out", str(out), "--duration", str(duration)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )


def test_clean_recording_replays_every_frame(tmp_path: Path) -> None:
    assert record_cli.main(["--camera", SOURCE, "--out", str(tmp_path / "d"), "--duration", "1.5"]) == 0
    drive = open_drive(tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["finished"] is True and meta["width"] == 320 and meta["frames"] == len(drive.timestamps)
    assert len(read_frames(drive)) == len(drive.timestamps) >= 30


def test_sigkill_leaves_a_drive_readable_to_its_last_complete_frame(tmp_path: Path) -> None:
    process = _record_in_subprocess(tmp_path / "d", duration=30)
    time.sleep(3.0)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    drive = open_drive(tmp_path / "d")
    indexed = len(drive.timestamps)
    frames = read_frames(drive)
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["finished"] is False
    assert 20 <= len(frames) <= indexed
    assert frames[0].shape == (240, 320, 3)


def test_disk_full_is_a_clear_error_and_the_drive_stays_readable(tmp_path: Path) -> None:
    process = _record_in_subprocess(tmp_path / "d", duration=30, limit_bytes=60_000)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "frames written to" in stderr and ("disk full" in stderr or "write" in stderr.lower())
    frames = read_frames(open_drive(tmp_path / "d"))
    assert len(frames) >= 1


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "video.mkv").write_bytes(b"x")
    assert record_cli.main(["--camera", SOURCE, "--out", str(tmp_path / "d"), "--duration", "1"]) == 1


def test_full_disk_under_the_index_ends_the_recording_and_keeps_whole_lines(tmp_path: Path) -> None:
    # A black picture compresses to a few bytes a frame, so frames.jsonl reaches the size limit
    # before the video does and its last write is cut mid-line.
    source = "test://?size=320x240&fps=30&pattern=black"
    process = _record_in_subprocess(tmp_path / "d", duration=30, limit_bytes=8_000, source=source)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "frames.jsonl: cannot write frame" in stderr and "disk full" in stderr
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    drive = open_drive(tmp_path / "d")
    assert meta["finished"] is False and len(drive.timestamps) == meta["frames"] > 0
    assert len(read_frames(drive)) == meta["frames"]


def test_frame_index_on_a_full_device_reports_instead_of_raising() -> None:
    index = _FrameIndex(Path("/dev/full"), clock=lambda: 1)
    assert index.add(0) is False and index.count == 0
    assert index.error is not None and "/dev/full: cannot write frame 0" in index.error
    index.close()
