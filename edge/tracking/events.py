"""Tracker events: ``stop_sign_ahead`` once per track at confirmation, ``stop_sign_lost`` at its end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

AHEAD = "stop_sign_ahead"
LOST = "stop_sign_lost"


@dataclass(frozen=True)
class TrackEvent:
    """One event line. Times are the frame's (monotonic capture time live, recorded time in replay).

    Attributes:
        event: ``stop_sign_ahead`` or ``stop_sign_lost``.
        frame: index of the frame that caused it.
        timestamp_ns: that frame's time.
        track_id: the track (one ``stop_sign_ahead`` per id, ever).
        box: smoothed x1, y1, x2, y2 in source pixels.
        score: smoothed score.
        hits: frames with a hit so far.
        distance_m: pinhole estimate, null without a focal length.
        time_to_sign_s: distance / speed, null without a fresh speed reading.
        reason: why a track was lost (``timeout``, ``source_restart``, ``end_of_stream``); null for ahead.
        first_seen_frame: the frame where the track started.
    """

    event: str
    frame: int
    timestamp_ns: int
    track_id: int
    box: tuple[float, float, float, float]
    score: float
    hits: int
    distance_m: float | None
    time_to_sign_s: float | None
    reason: str | None
    first_seen_frame: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["box"] = [round(float(v), 2) for v in self.box]
        data["score"] = round(float(self.score), 4)
        for key in ("distance_m", "time_to_sign_s"):
            if data[key] is not None:
                data[key] = round(float(data[key]), 2)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
