"""OpenCV capture: the fallback when PyGObject is missing (PyPI OpenCV has no GStreamer).

A camera (``options.endless``: a V4L2 device or an RTSP camera) has no end: a failed read there
is a fault, handled as the GStreamer source handles one. It is reported (``source_stalled``),
the capture is reopened with a backoff doubling from ``backoff_initial_s`` to ``backoff_max_s``
(``source_rebuilding`` per attempt), and the first frame after it carries the outage as
``Frame.gap_ns`` (``source_restored``). A file ends at its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2

from stopsign.edge.sources.base import Source, SourceOpenError, SourceOptions, StatusReport
from stopsign.edge.sources.heap import release_free_heap
from stopsign.edge.vision.frame import Frame


def _no_report(kind: str, fields: dict) -> None:
    """The default report: a caller that passes none does not hear of faults."""


class OpenCvSource(Source):
    """``cv2.VideoCapture`` on a file, device index or RTSP URL; every frame in order.

    ``timestamps`` (a recorded drive's (pts_ns, monotonic_ns) per frame) replace OpenCV's.
    """

    def __init__(
        self,
        target: str | int,
        live: bool,
        timestamps: list[tuple[int, int]] | None = None,
        options: SourceOptions | None = None,
        report: StatusReport = _no_report,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.target, self.live, self._timestamps = target, live, timestamps
        self.options, self._report, self._clock = options or SourceOptions(), report, clock
        self.description = f"OpenCV capture {target}"
        self._capture: cv2.VideoCapture | None = None
        self._index = 0
        self._eos = False
        self._state = "closed"
        self._down_since_ns = 0
        self._last_capture_ns = 0
        self._attempts = 0
        self._delay_s = self.options.backoff_initial_s
        self._next_attempt_ns = 0

    def open(self) -> None:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            raise SourceOpenError(f"cannot open {self.target} with OpenCV capture")
        self._capture, self._state = capture, "running"

    @property
    def eos(self) -> bool:
        return self._eos

    @property
    def state(self) -> str:
        return "eos" if self._eos else self._state

    @property
    def fps(self) -> float | None:
        value = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0.0
        return value or None

    def read(self, timeout_s: float) -> Frame | None:
        if self._eos or self._state == "closed":
            return None
        if self._capture is None:
            return self._reopen(timeout_s)
        ok, image = self._capture.read()
        if not ok:
            if self.options.endless:
                self._go_down("no frame from the capture (device unplugged or stream ended)")
            else:
                self._eos = True
            return None
        pts = int(self._capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
        mono = self._clock()
        gap_ns = 0
        if self._state != "running":
            gap_ns = max(0, mono - self._last_capture_ns)
            self._report(
                "source_restored",
                {"source": str(self.target), "attempts": self._attempts,
                 "down_s": round((mono - self._down_since_ns) / 1e9, 3), "gap_s": round(gap_ns / 1e9, 3)},
            )  # fmt: skip
            self._state, self._attempts, self._delay_s = "running", 0, self.options.backoff_initial_s
        self._last_capture_ns = mono
        if self._timestamps is not None and self._index < len(self._timestamps):
            pts, mono = self._timestamps[self._index]
        frame = Frame(self._index, pts, mono, image, gap_ns=gap_ns)
        self._index += 1
        return frame

    def _go_down(self, reason: str) -> None:
        now = self._clock()
        if self._state == "running":
            self._down_since_ns = now
            self._report(
                "source_stalled",
                {"source": str(self.target), "reason": reason,
                 "since_last_frame_s": round((now - self._last_capture_ns) / 1e9, 3)},
            )  # fmt: skip
        self._state = "stalled"
        self._release()
        self._next_attempt_ns = now + int(self._delay_s * 1e9)

    def _reopen(self, timeout_s: float) -> Frame | None:
        now = self._clock()
        if now < self._next_attempt_ns:
            time.sleep(min(timeout_s, (self._next_attempt_ns - now) / 1e9))
            return None
        self._attempts += 1
        self._state = "rebuilding"
        self._report(
            "source_rebuilding",
            {"source": str(self.target), "attempt": self._attempts, "after_s": round(self._delay_s, 3)},
        )
        self._delay_s = min(self._delay_s * 2, self.options.backoff_max_s)
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            self._go_down(f"cannot reopen {self.target}")
            return None
        self._capture = capture
        return None

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
            release_free_heap()  # the decoder's freed blocks, as after a GStreamer teardown

    def close(self) -> None:
        self._release()
        self._state = "closed"
