"""A desktop window with the annotated frames (``--show``; needs OpenCV with HighGUI)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from stopsign.edge.sinks.base import FrameResult, Sink
from stopsign.edge.sinks.draw import annotate


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
