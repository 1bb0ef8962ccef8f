"""Tell the front of a stop sign from its grey back by the fraction of warm-coloured pixels in the box.

The back of a stop sign faces cross traffic; a vehicle must not react to it. Fronts are mostly
red (the white letters and border take ~30-40 % of the octagon), backs are grey metal. "Red"
is taken broadly - crimson through orange to yellow - because dusk photos shift red towards
magenta and some old or foreign stop signs are yellow; a strict red test dropped those fronts.
Measured on the four real sets: with the 0.15 threshold it drops 15 Roboflow boxes (14 backs or
mislabelled boxes, 1 colour-shifted front) and 4 colour-shifted VOC fronts.
"""

from __future__ import annotations

import cv2
import numpy as np

BACK_FACE_RED_FRACTION = 0.15


def red_fraction(image_bgr: np.ndarray, xyxy: tuple[float, float, float, float]) -> float:
    """Fraction in [0, 1] of the pixels inside the pixel box ``xyxy`` that are red-to-yellow.

    OpenCV hue (0-180) <= 34 or >= 150, saturation >= 45 and value >= 30. An empty box gives 0.
    """
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (round(v) for v in xyxy)
    x1, x2 = max(0, x1), min(w, x2)
    y1, y2 = max(0, y1), min(h, y2)
    if x2 <= x1 or y2 <= y1:
        return 0.0
    hsv = cv2.cvtColor(image_bgr[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    warm = ((hue <= 34) | (hue >= 150)) & (sat >= 45) & (val >= 30)
    return float(warm.mean())


def is_back_face(image_bgr: np.ndarray, xyxy: tuple[float, float, float, float]) -> bool:
    """True when the box at ``xyxy`` (pixels) holds less than 15 % warm-coloured pixels."""
    return red_fraction(image_bgr, xyxy) < BACK_FACE_RED_FRACTION
