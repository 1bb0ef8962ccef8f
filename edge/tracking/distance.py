"""Distance to a sign from its image height (pinhole model), and time-to-sign from a speed input."""

from __future__ import annotations

from dataclasses import dataclass


def distance_m(box_height_px: float, sign_size_m: float, focal_px: float | None) -> float | None:
    """``focal * real size / image size``; None without a focal length (never a guess)."""
    if focal_px is None or box_height_px <= 0:
        return None
    return focal_px * sign_size_m / box_height_px


@dataclass
class SpeedInput:
    """The latest vehicle speed, e.g. from ``--speed-kmh`` or a UDP feed, and when it was read.

    ``timestamp_ns`` is on the same clock as the frames (monotonic capture time live, recorded
    time in replay); a reading older than ``max_age_s`` at the frame's time is ignored.
    """

    speed_mps: float | None = None
    timestamp_ns: int | None = None
    constant: bool = False  # a fixed --speed-kmh never goes stale

    @classmethod
    def fixed_kmh(cls, kmh: float) -> SpeedInput:
        return cls(speed_mps=kmh / 3.6, timestamp_ns=0, constant=True)

    def set(self, speed_mps: float, timestamp_ns: int) -> None:
        self.speed_mps, self.timestamp_ns = float(speed_mps), int(timestamp_ns)

    def current(self, now_ns: int, max_age_s: float) -> float | None:
        if self.speed_mps is None or self.timestamp_ns is None:
            return None
        if not self.constant and (now_ns - self.timestamp_ns) > max_age_s * 1e9:
            return None
        return self.speed_mps


def time_to_sign_s(distance: float | None, speed_mps: float | None) -> float | None:
    if distance is None or speed_mps is None or speed_mps < 0.1:
        return None
    return distance / speed_mps
