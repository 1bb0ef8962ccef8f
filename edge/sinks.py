"""Outputs of a run: detections, events, per-frame logs, annotated video, a window and UDP.

Every sink is wrapped in a :class:`GuardedSink`: an exception (disk full, UDP peer unreachable)
is reported once as a ``sink_error`` status event, the sink is disabled, and it is reopened after
a backoff (1 s doubling to 60 s). A sink never stops detection.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import sys
import time
from abc import ABC
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from stopsign.edge.detections import Detections
from stopsign.edge.frame import Frame
from stopsign.edge.health import FrameTimings

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """What the loop knows about one frame after processing it.

    ``detections`` is None when the frame was rejected (``rejected`` says why) or inference failed.
    """

    frame: Frame
    detections: Detections | None
    timings: FrameTimings
    rejected: str | None = None


class Sink(ABC):  # noqa: B024 - every hook is optional
    """Receives frame results and events; hooks default to doing nothing."""

    name = "sink"

    def open(self) -> None:  # noqa: B027
        """Acquire the file/socket; called at start and on every retry."""

    def on_frame(self, result: FrameResult) -> None:  # noqa: B027
        """Called for every frame read (rejected ones included)."""

    def on_event(self, event: dict[str, Any]) -> None:  # noqa: B027
        """Called for every tracker event and status event."""

    def close(self) -> None:  # noqa: B027
        """Flush and release; idempotent."""


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


def annotate(image: np.ndarray, result: FrameResult, class_names: Sequence[str]) -> None:
    """Draw boxes, scores and the rejection reason onto ``image`` (BGR, in place)."""
    if result.detections is not None:
        for box, score, cls in zip(
            result.detections.xyxy, result.detections.score, result.detections.class_id
        ):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
            label = f"{class_names[cls] if cls < len(class_names) else cls} {score:.2f}"
            cv2.putText(image, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
    if result.rejected is not None:
        cv2.putText(
            image, f"rejected: {result.rejected}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2
        )


class VideoSink(Sink):
    """Annotated video through ``cv2.VideoWriter`` (mp4v); the frame size is fixed by the first frame.

    ``cv2.VideoWriter`` reports no write error: on a full disk it drops frames with a warning of
    its own. So the free space is checked when the file opens and every ``SPACE_CHECK_FRAMES``
    frames, and less than one raw frame free is a failure (ENOSPC) the guard reports and retries.
    A retry never overwrites what was written: it continues in ``<name>.part<N><suffix>``.
    """

    name = "video"
    SPACE_CHECK_FRAMES = 30

    def __init__(self, path: str, fps: Callable[[], float | None], class_names: Sequence[str]) -> None:
        self.path, self._fps, self._names = path, fps, list(class_names)
        self._writer: cv2.VideoWriter | None = None
        self._canvas: np.ndarray | None = None  # reused drawing buffer (frames may be read-only)
        self._parts = 0  # files opened so far
        self._written = 0
        self._current = Path(path)

    def on_frame(self, result: FrameResult) -> None:
        image = result.frame.image
        if self._writer is None:
            h, w = image.shape[:2]
            self._canvas = np.empty((h, w, 3), np.uint8)
            self._writer = self._open_writer(w, h)
        assert self._canvas is not None
        if image.shape == self._canvas.shape:
            np.copyto(self._canvas, image)
        else:  # caps change mid-stream: keep the file's size
            cv2.resize(image, self._canvas.shape[1::-1], dst=self._canvas)
        annotate(self._canvas, result, self._names)
        self._writer.write(self._canvas)
        self._written += 1
        if self._written % self.SPACE_CHECK_FRAMES == 0:
            self._check_space()

    def _open_writer(self, w: int, h: int) -> cv2.VideoWriter:
        target = Path(self.path)
        if self._parts:
            target = target.with_name(f"{target.stem}.part{self._parts}{target.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._current = target
        self._check_space()
        writer = cv2.VideoWriter(
            str(target), cv2.VideoWriter.fourcc(*"mp4v"), float(self._fps() or 30.0), (w, h)
        )
        if not writer.isOpened():
            raise OSError(f"{target}: cv2.VideoWriter cannot open it for mp4v {w}x{h}")
        self._parts += 1
        return writer

    def _check_space(self) -> None:
        frame_bytes = self._canvas.nbytes if self._canvas is not None else 0
        free = shutil.disk_usage(self._current.parent).free
        if free <= frame_bytes:
            raise OSError(errno.ENOSPC, f"No space left on device for {self._current} ({free} bytes free)")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def gui_available() -> bool:
    """False for opencv-python-headless (no HighGUI backend)."""
    try:
        cv2.namedWindow("stopsign-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("stopsign-probe")
    except cv2.error:
        return False
    return True


class ShowSink(Sink):
    """A window with the annotated frames (needs opencv-python, not the headless build)."""

    name = "show"

    def __init__(self, class_names: Sequence[str], title: str = "edge-detect") -> None:
        self._names, self._title = list(class_names), title
        self._canvas: np.ndarray | None = None

    def on_frame(self, result: FrameResult) -> None:
        image = result.frame.image
        if self._canvas is None or self._canvas.shape != image.shape:
            self._canvas = np.empty_like(image)
        np.copyto(self._canvas, image)
        annotate(self._canvas, result, self._names)
        cv2.imshow(self._title, self._canvas)
        cv2.waitKey(1)

    def close(self) -> None:
        if self._canvas is not None:
            cv2.destroyWindow(self._title)
            self._canvas = None


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--udp must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


class UdpSink(Sink):
    """Events and per-frame detections as JSON datagrams to ``host:port``.

    The socket is connected, so an unreachable peer surfaces (ICMP port unreachable) as an
    error on a later send: reported and retried like any sink failure.
    """

    name = "udp"

    def __init__(self, address: str, class_names: Sequence[str]) -> None:
        self.host, self.port = parse_host_port(address)
        self._names = list(class_names)
        self._socket: socket.socket | None = None

    def open(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.connect((self.host, self.port))
        self._socket = sock

    def _send(self, record: dict[str, Any]) -> None:
        if self._socket is None:
            self.open()
        assert self._socket is not None
        self._socket.send(json.dumps(record, separators=(",", ":")).encode())

    def on_event(self, event: dict[str, Any]) -> None:
        self._send(event)

    def on_frame(self, result: FrameResult) -> None:
        if result.detections is not None and len(result.detections):
            self._send(
                {
                    "event": "detections",
                    "frame": result.frame.index,
                    "pts_ns": result.frame.pts_ns,
                    "detections": result.detections.to_records(self._names),
                }
            )

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class GuardedSink:
    """Runs a sink's hooks; on failure reports it, disables the sink and retries after a backoff."""

    def __init__(
        self,
        sink: Sink,
        report: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self.sink, self._report, self._clock = sink, report, clock
        self._retry_initial_s, self._retry_max_s = retry_initial_s, retry_max_s
        self._delay_s = retry_initial_s
        self.failures = 0
        self.disabled_until: float | None = None
        self._recovering = False  # reopened after a failure, no successful write yet

    @property
    def active(self) -> bool:
        if self.disabled_until is None:
            return True
        if self._clock() < self.disabled_until:
            return False
        return self._reopen()

    def open(self) -> None:
        self._call(self.sink.open)

    def on_frame(self, result: FrameResult) -> None:
        if self.active:
            self._call(self.sink.on_frame, result)

    def on_event(self, event: dict[str, Any]) -> None:
        if self.active:
            self._call(self.sink.on_event, event)

    def close(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:  # closing a broken file (disk full) fails again: log it, go on
            log.warning("sink %s: close failed: %s", self.sink.name, exc)

    def _reopen(self) -> bool:
        self.close()
        self.disabled_until = None
        self._recovering = True
        return self._call(self.sink.open)

    def _call(self, hook: Callable[..., None], *args: Any) -> bool:
        try:
            hook(*args)
        except Exception as exc:  # any sink failure is contained here by design
            self.failures += 1
            self.disabled_until = self._clock() + self._delay_s
            retry_in = self._delay_s
            self._delay_s = min(self._delay_s * 2, self._retry_max_s)
            if not self._recovering:
                # Also on stderr, once per outage: when the failing sink is the events file
                # itself, the sink_error event below has nowhere else to go.
                log.warning(
                    "sink %s failed (%s: %s); retrying in %g s",
                    self.sink.name,
                    type(exc).__name__,
                    exc,
                    retry_in,
                )
            # Disabled before reporting: the report may reach this very sink.
            self._report(
                "sink_error",
                {"sink": self.sink.name, "error": f"{type(exc).__name__}: {exc}", "retry_in_s": retry_in},
            )
            return False
        if self._recovering and hook != self.sink.open:
            self._recovering = False
            self._delay_s = self._retry_initial_s
            self._report("sink_restored", {"sink": self.sink.name, "failures": self.failures})
        return True
