"""The annotated video file (``--save``)."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from stopsign.edge.sinks.base import FrameResult, Sink
from stopsign.edge.sinks.draw import annotate


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
