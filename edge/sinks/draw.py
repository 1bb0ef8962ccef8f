"""Drawing a frame's result onto its image, shared by the outputs that show pictures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stopsign.edge.sinks.base import FrameResult

if TYPE_CHECKING:  # only for the annotations: live imports this module
    from stopsign.edge.sinks.live import TrackOverlay

DETECTION_BGR = (0, 255, 0)
TRACK_BGR = (255, 200, 0)  # a track not yet confirmed
CONFIRMED_BGR = (0, 0, 255)  # a confirmed sign: the one an event announced
TILE_BGR = (255, 128, 0)


def annotate(
    image: np.ndarray,
    result: FrameResult,
    class_names: Sequence[str],
    tracks: Sequence[TrackOverlay] = (),
    tiles: Sequence[tuple[int, int, int, int]] = (),
) -> None:
    """Draw onto ``image`` (BGR, in place): the tile plan (x, y, w, h in frame pixels), boxes with
    scores, the tracks with their id and distance (a confirmed one thick, red, labelled STOP), and
    the rejection reason. ``image`` must have the frame's size (boxes are in frame pixels)."""
    for x, y, w, h in tiles:
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), TILE_BGR, 1, cv2.LINE_4)
    if result.detections is not None:
        for box, score, cls in zip(
            result.detections.xyxy, result.detections.score, result.detections.class_id
        ):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), DETECTION_BGR, 2)
            label = f"{class_names[cls] if cls < len(class_names) else cls} {score:.2f}"
            cv2.putText(image, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, DETECTION_BGR, 1)
    for track in tracks:
        x1, y1, x2, y2 = (round(v) for v in track.box)
        colour = CONFIRMED_BGR if track.confirmed else TRACK_BGR
        cv2.rectangle(image, (x1 - 3, y1 - 3), (x2 + 3, y2 + 3), colour, 4 if track.confirmed else 1)
        label = f"#{track.track_id}" + (" STOP" if track.confirmed else "")
        if track.distance_m is not None:
            label += f" {track.distance_m:.0f} m"
        cv2.putText(image, label, (x1, y2 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 2)
    if result.rejected is not None:
        cv2.putText(
            image, f"rejected: {result.rejected}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2
        )
