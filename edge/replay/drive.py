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
from stopsign.edge.sources.drive import RecordedDrive, load_drive


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
        drive = load_drive(folder)  # drops the torn index tail of an unfinished recording
    except SourceOpenError as exc:
        raise DriveError(str(exc)) from None
    previous = (-1, -1)
    for line_no, (pts, mono) in enumerate(drive.timestamps, 1):
        if pts <= previous[0] or mono <= previous[1]:
            raise DriveError(
                f"{folder / 'frames.jsonl'}:{line_no}: times go backwards or repeat "
                f"(pts_ns {pts}, monotonic_ns {mono} after {previous[0]}, {previous[1]})"
            )
        previous = (pts, mono)
    return drive


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
