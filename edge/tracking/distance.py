"""Distance to a sign from its image height (pinhole model), and time-to-sign from a speed input."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels of the source frame (the resolution the detections are in).

    Attributes:
        fx, fy: focal lengths in pixels (x and y); the distance uses ``fy`` (box heights).
        cx, cy: principal point in pixels; None when unknown (not needed for the distance).
    """

    fx: float
    fy: float
    cx: float | None = None
    cy: float | None = None

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"camera intrinsics {name}: must be a finite number > 0, got {value!r}")

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> CameraIntrinsics | None:
        """From a recorded drive's ``meta.json`` ``intrinsics`` ({fx, fy[, cx, cy]}); None when absent.

        One focal length alone (``fx`` or ``fy``) serves for both: square pixels.
        """
        raw: dict[str, Any] = meta.get("intrinsics") or {}
        given = [raw[k] for k in ("fx", "fy") if raw.get(k) is not None]
        if not given:
            return None
        fx = raw["fx"] if raw.get("fx") is not None else given[0]
        fy = raw["fy"] if raw.get("fy") is not None else given[0]
        return cls(float(fx), float(fy), raw.get("cx"), raw.get("cy"))


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
