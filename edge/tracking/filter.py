"""Alpha-beta filter on a box in scale-aware coordinates: centre, log width, log height.

Log sizes make the constant-velocity model fit an approach: a sign's image size grows roughly
exponentially in the last seconds, which is a constant velocity in log space.
"""

from __future__ import annotations

import numpy as np


def box_to_state(xyxy: np.ndarray) -> np.ndarray:
    """(4,) x1, y1, x2, y2 -> (4,) cx, cy, log w, log h."""
    w = max(float(xyxy[2] - xyxy[0]), 1e-3)
    h = max(float(xyxy[3] - xyxy[1]), 1e-3)
    return np.array([(xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2, np.log(w), np.log(h)], np.float64)


def state_to_box(state: np.ndarray) -> np.ndarray:
    w, h = np.exp(state[2]), np.exp(state[3])
    return np.array([state[0] - w / 2, state[1] - h / 2, state[0] + w / 2, state[1] + h / 2], np.float64)


class AlphaBetaBox:
    """Constant-velocity alpha-beta filter; velocities are per second, so any frame rate works."""

    def __init__(self, xyxy: np.ndarray, alpha: float, beta: float) -> None:
        self.state = box_to_state(xyxy)
        self.velocity = np.zeros(4, np.float64)
        self.alpha, self.beta = alpha, beta

    def predict(self, dt_s: float) -> np.ndarray:
        """Predicted box after ``dt_s`` seconds (does not change the filter)."""
        return state_to_box(self.state + self.velocity * max(dt_s, 0.0))

    def update(self, xyxy: np.ndarray, dt_s: float, trusted: bool = True) -> None:
        """Correct with a measured box; an untrusted one (e.g. a low-score, partly occluded sign)
        moves the box but not the velocity, so one sliver cannot send the prediction astray."""
        predicted = self.state + self.velocity * max(dt_s, 0.0)
        residual = box_to_state(xyxy) - predicted
        self.state = predicted + self.alpha * residual
        if trusted and dt_s > 1e-6:
            self.velocity = self.velocity + (self.beta / dt_s) * residual

    @property
    def box(self) -> np.ndarray:
        return state_to_box(self.state)
