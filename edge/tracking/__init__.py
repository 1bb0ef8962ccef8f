"""Temporal smoothing: tracks from per-frame detections, one ``stop_sign_ahead`` per real sign.

numpy only. ``Tracker(TrackerConfig(...)).update(detections, frame_index, timestamp_ns)``
returns the events of that frame; ``reset(reason, ...)`` ends every track (source restart) and
``flush()`` ends them at end of stream. Evaluation on labelled drives: ``edge-replay --report``.
"""

from stopsign.edge.tracking.config import TrackerConfig, TrackerConfigError
from stopsign.edge.tracking.distance import CameraIntrinsics, SpeedInput
from stopsign.edge.tracking.events import AHEAD, LOST, TrackEvent
from stopsign.edge.tracking.tracker import Track, Tracker

__all__ = [
    "AHEAD",
    "LOST",
    "CameraIntrinsics",
    "SpeedInput",
    "Track",
    "TrackEvent",
    "Tracker",
    "TrackerConfig",
    "TrackerConfigError",
]
