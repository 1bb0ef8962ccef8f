"""OpenCV capture: the fallback when PyGObject is missing (PyPI OpenCV has no GStreamer)."""

from __future__ import annotations

import time

import cv2

from stopsign.edge.sources.base import Source, SourceOpenError
from stopsign.edge.vision.frame import Frame


class OpenCvSource(Source):
    """``cv2.VideoCapture`` on a file, device index or RTSP URL; every frame in order.

    ``timestamps`` (a recorded drive's (pts_ns, monotonic_ns) per frame) replace OpenCV's.
    """

    def __init__(
        self, target: str | int, live: bool, timestamps: list[tuple[int, int]] | None = None
    ) -> None:
        self.target, self.live, self._timestamps = target, live, timestamps
        self.description = f"OpenCV capture {target}"
        self._capture: cv2.VideoCapture | None = None
        self._index = 0
        self._eos = False

    def open(self) -> None:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            raise SourceOpenError(f"cannot open {self.target} with OpenCV capture")
        self._capture = capture

    @property
    def eos(self) -> bool:
        return self._eos

    @property
    def fps(self) -> float | None:
        value = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0.0
        return value or None

    def read(self, timeout_s: float) -> Frame | None:
        if self._capture is None or self._eos:
            return None
        ok, image = self._capture.read()
        if not ok:
            self._eos = True
            return None
        pts = int(self._capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
        mono = time.monotonic_ns()
        if self._timestamps is not None and self._index < len(self._timestamps):
            pts, mono = self._timestamps[self._index]
        frame = Frame(self._index, pts, mono, image)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
