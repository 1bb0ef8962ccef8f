"""Validation of a recorded drive folder (DESIGN.md) beyond what the drive source reads.

Errors name the file and line: a ``frames.jsonl`` whose times go backwards, a video with fewer
frames than its index, a missing ``meta.json``, a malformed ``labels.jsonl`` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stopsign.edge.sources.base import SourceOpenError
from stopsign.edge.sources.drive import VIDEO_NAMES, RecordedDrive, load_drive


class DriveError(ValueError):
    """A recorded drive is malformed; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class DriveLabels:
    """Ground truth per frame: ``boxes[i]`` is an (n, 4) float32 xyxy array in frame pixels."""

    boxes: list[np.ndarray]

    def present(self, index: int) -> bool:
        return index < len(self.boxes) and len(self.boxes[index]) > 0


def open_drive(folder: str | Path) -> RecordedDrive:
    """Load and validate a drive; returns the drive source's :class:`RecordedDrive`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DriveError(f"{folder}: no such drive folder")
    if not (folder / "meta.json").is_file():
        raise DriveError(f"{folder / 'meta.json'}: missing (camera, resolution, fps, intrinsics)")
    try:
        drive = load_drive(folder)
    except SourceOpenError as exc:
        drive = _load_unfinished(folder, exc)
    previous = (-1, -1)
    for line_no, (pts, mono) in enumerate(drive.timestamps, 1):
        if pts <= previous[0] or mono <= previous[1]:
            raise DriveError(
                f"{folder / 'frames.jsonl'}:{line_no}: times go backwards or repeat "
                f"(pts_ns {pts}, monotonic_ns {mono} after {previous[0]}, {previous[1]})"
            )
        previous = (pts, mono)
    return drive


def _complete_lines(path: Path) -> list[str]:
    """The lines of an unfinished ``frames.jsonl`` that reached the disk whole.

    A power cut after a write but before the file system committed it can leave a torn last line
    or a tail of NUL bytes (the file length was updated, its data not); both are dropped.
    """
    lines = path.read_bytes().rstrip(b"\0").decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return lines


def _load_unfinished(folder: Path, error: SourceOpenError) -> RecordedDrive:
    """Re-read a drive whose recording never finished, dropping a torn tail of its index.

    Any other fault, or any fault in a finished recording, is reported as ``error`` said.
    """
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DriveError(f"{meta_path}: not valid JSON ({exc})") from None
    index = folder / "frames.jsonl"
    video = next((folder / n for n in VIDEO_NAMES if (folder / n).is_file()), None)
    if meta.get("finished") is not False or video is None or not index.is_file():
        raise DriveError(str(error)) from None
    timestamps: list[tuple[int, int]] = []
    for line_no, line in enumerate(_complete_lines(index), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            entry, pts, mono = int(record["index"]), int(record["pts_ns"]), int(record["monotonic_ns"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DriveError(
                f"{index}:{line_no}: expected {{'index', 'pts_ns', 'monotonic_ns'}} ({exc})"
            ) from None
        if entry != len(timestamps):
            raise DriveError(f"{index}:{line_no}: index {entry}, expected {len(timestamps)}")
        timestamps.append((pts, mono))
    return RecordedDrive(folder, video, timestamps, meta)


def read_frames(drive: RecordedDrive) -> list[np.ndarray]:
    """Decode every frame of the drive's video; an index longer than the video is an error.

    Except for a recording that never finished (``"finished": false`` in meta.json: cut by a
    crash, SIGKILL or power loss): its index is trimmed to the frames the video still holds.
    A video longer than its index is trimmed to the index.
    """
    capture = cv2.VideoCapture(str(drive.video))
    if not capture.isOpened():
        raise DriveError(f"{drive.video}: cannot be opened as a video")
    frames: list[np.ndarray] = []
    try:
        while len(frames) < len(drive.timestamps):
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
    finally:
        capture.release()
    if len(frames) < len(drive.timestamps):
        if drive.meta.get("finished") is False:
            del drive.timestamps[len(frames) :]  # the unfinished tail never reached the disk
            return frames
        raise DriveError(
            f"{drive.video}: {len(frames)} decodable frames but frames.jsonl indexes {len(drive.timestamps)} "
            f"(frames.jsonl:{len(frames) + 1} has no video frame)"
        )
    return frames


def read_labels(folder: str | Path, frames: int) -> DriveLabels | None:
    """``labels.jsonl`` (lines ``{"index", "boxes": [[x1, y1, x2, y2], ...]}``) or None when absent."""
    path = Path(folder) / "labels.jsonl"
    if not path.is_file():
        return None
    boxes = [np.zeros((0, 4), np.float32) for _ in range(frames)]
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record: dict[str, Any] = json.loads(line)
            index = int(record["index"])
            array = np.asarray(record.get("boxes", []), np.float32).reshape(-1, 4)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DriveError(
                f"{path}:{line_no}: expected {{'index', 'boxes': [[x1, y1, x2, y2]]}} ({exc})"
            ) from None
        if not 0 <= index < frames:
            raise DriveError(f"{path}:{line_no}: index {index} outside the drive's {frames} frames")
        boxes[index] = array
    return DriveLabels(boxes)
