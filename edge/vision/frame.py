"""``Frame``: one camera or video frame with its timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_TIMESTAMP = -1  # pts_ns when the source gave none (GStreamer's GST_CLOCK_TIME_NONE)


@dataclass(frozen=True)
class Frame:
    """One frame as delivered by a source.

    Attributes:
        index: 0-based count of frames the source delivered (dropped frames are not counted).
        pts_ns: the source's presentation timestamp in ns (``NO_TIMESTAMP`` when unknown).
        monotonic_ns: ``time.monotonic_ns()`` when the frame was captured (pulled from the
            camera), or the recorded capture time for a recorded drive.
        image: (H, W, 3) uint8 BGR. It may be a read-only view of the capture buffer: copy it
            before drawing on it.
        name: where a still image came from (its path); None for video frames.
        gap_ns: how long the source delivered nothing before this frame because it was down
            (a camera link that dropped and came back); 0 for a frame in a continuous stream.
    """

    index: int
    pts_ns: int
    monotonic_ns: int
    image: np.ndarray
    name: str | None = None
    gap_ns: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.image.shape[0]), int(self.image.shape[1])
