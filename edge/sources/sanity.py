"""Frame sanity checks: what a camera can deliver that must not count as fresh evidence.

Rejected (the frame is reported and skipped): a repeated timestamp, a timestamp going
backwards, content identical to the previous frame (a frozen driver), a black frame and a
uniform ("covered lens") frame. Reported but processed: a timestamp jump and a change of frame
size (caps change); both break temporal continuity, so the run resets the tracker.

The content checks work on a small thumbnail in reused buffers (no full-size allocation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame

THUMB_SIZE = (64, 36)  # (width, height)
# Area-averaging all rows of a 720p frame costs ~0.7 ms per frame, more than the letterbox. A
# strided view keeping 4 rows per thumbnail row (every column) costs ~0.2 ms and still averages
# ~100 pixels per thumbnail pixel, enough to smooth sensor noise out of the std thresholds.
_ROWS_PER_THUMB_ROW = 4


def thumbnail_source(image: np.ndarray) -> np.ndarray:
    """A view of ``image`` that INTER_AREA shrinks to THUMB_SIZE on its fast path: centred crop to
    whole multiples of the thumbnail (a ratio like 416/64 takes OpenCV's general path, 3x slower
    than a whole 384/64), then every k-th row, keeping at least 4 rows per thumbnail row."""
    height, width = image.shape[:2]
    thumb_w, thumb_h = THUMB_SIZE
    fx, fy = width // thumb_w, height // thumb_h
    if fx < 1 or fy < 1:
        return image  # smaller than the thumbnail: resize as it is
    left, top = (width - fx * thumb_w) // 2, (height - fy * thumb_h) // 2
    image = image[top : top + fy * thumb_h, left : left + fx * thumb_w]
    step = max((k for k in range(1, fy + 1) if fy % k == 0 and fy // k >= _ROWS_PER_THUMB_ROW), default=1)
    return image[::step] if step > 1 else image


@dataclass(frozen=True)
class SanityOptions:
    """Thresholds. Luminance in 0..255 grey levels, times in seconds."""

    check_identical: bool = True
    black_mean: float = 16.0  # mean below this with little texture: black
    black_std: float = 8.0
    uniform_std: float = 2.0  # any brightness with less texture than this: covered/uniform
    max_gap_s: float = 1.0  # timestamp step beyond the expected one: a jump

    def __post_init__(self) -> None:
        for name in ("black_mean", "black_std", "uniform_std", "max_gap_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"SanityOptions.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class SanityResult:
    """``reject``: why the frame must be skipped (None: use it); ``notices``: (kind, fields) to report."""

    reject: str | None = None
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reset_tracking: bool = False


class FrameSanity:
    """Stateful checker: call :meth:`check` on every frame in delivery order.

    Args:
        live: for live sources the expected timestamp step is the capture-time step (frames may
            have been dropped in between); for ordered sources it is zero extra gap.
    """

    def __init__(self, options: SanityOptions, live: bool) -> None:
        self.options, self.live = options, live
        self._thumb = np.empty((THUMB_SIZE[1], THUMB_SIZE[0], 3), np.uint8)
        self._previous_thumb = np.empty_like(self._thumb)
        self._gray = np.empty((THUMB_SIZE[1], THUMB_SIZE[0]), np.uint8)
        self._have_previous = False
        self._pts: int | None = None
        self._mono: int | None = None
        self._size: tuple[int, int] | None = None

    def check(self, frame: Frame, content: np.ndarray | None = None) -> SanityResult:
        """Checks ``frame``; ``content``: an HxWx3 uint8 image of the frame to run the content
        checks on instead of the full-size frame (the detection loop passes its letterboxed copy:
        no second pass over a 720p frame)."""
        result = SanityResult()
        if self._size is not None and frame.size != self._size:
            result.notices.append(("caps_change", {"from": list(self._size), "to": list(frame.size)}))
            result.reset_tracking = True
            self._have_previous = False
        self._size = frame.size
        result.reject = self._check_time(frame, result)
        verdict = self._check_content(frame.image if content is None else content)
        result.reject = result.reject or verdict
        return result

    def _check_time(self, frame: Frame, result: SanityResult) -> str | None:
        pts, previous = frame.pts_ns, self._pts
        if pts == NO_TIMESTAMP:
            return None
        previous_mono = self._mono
        if previous is None or previous_mono is None:
            self._pts, self._mono = pts, frame.monotonic_ns
            return None
        if pts == previous:
            return "repeated_timestamp"
        if pts < previous:
            return "timestamp_backwards"  # keep the newest accepted pts: later frames must pass it
        step_s = (pts - previous) / 1e9
        expected_s = (frame.monotonic_ns - previous_mono) / 1e9 if self.live else 0.0
        if step_s - expected_s > self.options.max_gap_s:
            result.notices.append(
                ("timestamp_jump", {"step_s": round(step_s, 3), "expected_s": round(expected_s, 3)})
            )
            result.reset_tracking = True
        self._pts, self._mono = pts, frame.monotonic_ns
        return None

    def _check_content(self, image: np.ndarray) -> str | None:
        cv2.resize(thumbnail_source(image), THUMB_SIZE, dst=self._thumb, interpolation=cv2.INTER_AREA)
        cv2.cvtColor(self._thumb, cv2.COLOR_BGR2GRAY, dst=self._gray)
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(self._gray))
        identical = (
            self.options.check_identical
            and self._have_previous
            and np.array_equal(self._thumb, self._previous_thumb)
        )
        self._thumb, self._previous_thumb = self._previous_thumb, self._thumb
        self._have_previous = True
        if mean < self.options.black_mean and std < self.options.black_std:
            return "black"
        if std < self.options.uniform_std:
            return "covered"
        if identical:
            return "identical_content"
        return None
