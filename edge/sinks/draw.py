"""Drawing a frame's result onto its image, shared by the outputs that show pictures."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from stopsign.edge.sinks.base import FrameResult


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
