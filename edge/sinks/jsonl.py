"""JSON-lines outputs: per-frame detections, the event channel, and the per-frame stage log."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from stopsign.edge.sinks.base import FrameResult, Sink


class JsonLinesFile:
    """Appends JSON lines to a file (``-`` = stdout), rotating it past ``max_bytes`` (0 = never).

    Rotation renames ``x.jsonl`` to ``x.jsonl.1`` (and ``.1`` to ``.2`` ... up to ``backups``).
    """

    def __init__(self, path: str, max_bytes: int = 0, backups: int = 3) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._file: IO[str] | None = None
        self._size = 0

    def open(self) -> None:
        if self.path == "-":
            self._file = sys.stdout
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived handle
        self._size = os.fstat(self._file.fileno()).st_size

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.open()
        assert self._file is not None
        line = json.dumps(record, separators=(",", ":")) + "\n"
        self._file.write(line)
        self._file.flush()
        self._size += len(line)
        if self.max_bytes and self._size >= self.max_bytes and self.path != "-":
            self._rotate()

    def _rotate(self) -> None:
        self.close()
        path = Path(self.path)
        if path.is_file():  # /dev/* and pipes are never renamed
            for i in range(self.backups - 1, 0, -1):
                older = Path(f"{path}.{i}")
                if older.exists():
                    older.replace(f"{path}.{i + 1}")
            path.replace(f"{path}.1")
        self.open()

    def close(self) -> None:
        handle, self._file = self._file, None
        if handle is sys.stdout:
            handle.flush()
        elif handle is not None:
            handle.close()


class DetectionsSink(Sink):
    """One JSON line per frame: ``{"frame", "pts_ns", "detections": [{"xyxy", "score", "class"}]}``,
    or ``{"image": path, "detections": [...]}`` for still images (source pixels, score >= --conf)."""

    name = "detections"

    def __init__(self, path: str, class_names: Sequence[str]) -> None:
        self._out, self._names = JsonLinesFile(path), list(class_names)

    def open(self) -> None:
        self._out.open()

    def on_frame(self, result: FrameResult) -> None:
        frame = result.frame
        dets = result.detections.to_records(self._names) if result.detections is not None else []
        if frame.name is not None:
            record: dict[str, Any] = {"image": frame.name, "detections": dets}
        else:
            record = {"frame": frame.index, "pts_ns": frame.pts_ns, "detections": dets}
        if result.rejected is not None:
            record["rejected"] = result.rejected
        elif result.detections is None:
            record["skipped"] = "inference failed"
        self._out.write(record)

    def close(self) -> None:
        self._out.close()


class EventSink(Sink):
    """Tracker and status events as JSON lines, to a rotating file or stdout (``-``)."""

    name = "events"

    def __init__(self, path: str, max_bytes: int = 0) -> None:
        self._out = JsonLinesFile(path, max_bytes)

    def open(self) -> None:
        self._out.open()

    def on_event(self, event: dict[str, Any]) -> None:
        self._out.write(event)

    def close(self) -> None:
        self._out.close()


class FrameLogSink(Sink):
    """Per-frame records with stage timings (ms), rotating by size.

    A frame's record is written when the next frame (or close) arrives, so that it includes the
    time the sinks took on it, which is only known after this sink has run.
    """

    name = "frame_log"

    def __init__(self, path: str, max_bytes: int) -> None:
        self._out = JsonLinesFile(path, max_bytes)
        self._pending: FrameResult | None = None

    def open(self) -> None:
        self._out.open()

    def on_frame(self, result: FrameResult) -> None:
        pending, self._pending = self._pending, result
        if pending is not None:
            self._write(pending)

    def _write(self, result: FrameResult) -> None:
        frame = result.frame
        self._out.write(
            {
                "frame": frame.index,
                "pts_ns": frame.pts_ns,
                "monotonic_ns": frame.monotonic_ns,
                "detections": len(result.detections) if result.detections is not None else None,
                "rejected": result.rejected,
                "ms": result.timings.to_dict(),
            }
        )

    def close(self) -> None:
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                self._write(pending)
        finally:
            self._out.close()
