"""A recorded drive folder: ``video.mkv`` or ``video.mp4``, ``frames.jsonl`` and ``meta.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stopsign.edge.sources.base import SourceOpenError

VIDEO_NAMES = ("video.mkv", "video.mp4")


@dataclass(frozen=True)
class RecordedDrive:
    """``timestamps[i]`` = (pts_ns, monotonic_ns) of frame i; ``meta`` = meta.json's object."""

    folder: Path
    video: Path
    timestamps: list[tuple[int, int]]
    meta: dict[str, Any]


def load_drive(folder: str | Path) -> RecordedDrive:
    """Read a drive folder; errors name the file and line at fault.

    A recording that never finished (``"finished": false`` in meta.json: cut by a crash, SIGKILL
    or power loss) may end its index in a torn line or a tail of NUL bytes (the file length was
    committed, its data not); that tail is dropped. A finished recording is read strictly.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceOpenError(f"drive://{folder}: no such folder")
    video = next((folder / n for n in VIDEO_NAMES if (folder / n).is_file()), None)
    if video is None:
        raise SourceOpenError(f"{folder}: a recorded drive needs {' or '.join(VIDEO_NAMES)}")
    frames_path = folder / "frames.jsonl"
    if not frames_path.is_file():
        raise SourceOpenError(f"{folder}: a recorded drive needs frames.jsonl")
    meta_path = folder / "meta.json"
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SourceOpenError(f"{meta_path}: not valid JSON ({exc})") from None
    if meta.get("finished") is False:
        lines = _complete_lines(frames_path)
    else:
        lines = frames_path.read_text(encoding="utf-8").splitlines()
    timestamps: list[tuple[int, int]] = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            index, pts, mono = int(record["index"]), int(record["pts_ns"]), int(record["monotonic_ns"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SourceOpenError(
                f"{frames_path}:{line_no}: expected {{'index', 'pts_ns', 'monotonic_ns'}} ({exc})"
            ) from None
        if index != len(timestamps):
            raise SourceOpenError(f"{frames_path}:{line_no}: index {index}, expected {len(timestamps)}")
        timestamps.append((pts, mono))
    return RecordedDrive(folder, video, timestamps, meta)


def _complete_lines(path: Path) -> list[str]:
    """The lines of an unfinished ``frames.jsonl`` that reached the disk whole."""
    lines = path.read_bytes().rstrip(b"\0").decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return lines
