"""A folder of still images: each image is a frame of its own (no temporal meaning)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from stopsign.edge.sources.base import Source, SourceError, SourceOpenError
from stopsign.edge.sources.uri import list_images
from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame


class ImageFolderSource(Source):
    """Reads every image of ``folder`` in name order; unreadable files are errors naming the file."""

    live = False

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.description = f"images in {self.folder}"
        self._paths: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceOpenError(f"{self.folder}: no such folder")
        self._paths = list_images(self.folder)
        if not self._paths:
            raise SourceOpenError(f"{self.folder}: no images (.jpg, .png, ...) in this folder")

    @property
    def eos(self) -> bool:
        return self._next >= len(self._paths)

    def read(self, timeout_s: float) -> Frame | None:
        if self.eos:
            return None
        path = self._paths[self._next]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{path}: not a readable image")
        frame = Frame(self._next, NO_TIMESTAMP, time.monotonic_ns(), image, name=str(path))
        self._next += 1
        return frame
