"""Every tracker parameter in one validated dataclass, printed at start-up."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stopsign.edge.tracking.distance import CameraIntrinsics

if TYPE_CHECKING:
    from stopsign.edge.model.spec import ModelSpec

# The stay threshold, as a fraction of the enter threshold, when none is given.
STAY_FRACTION = 0.6
# The enter threshold, as a fraction of the model's operating threshold. The M-of-N confirmation
# removes the single-frame false positives a lower per-frame threshold lets through, so the track
# may start on weaker (farther) detections: chosen on the labelled drives, where 0.8 x 0.5 finds
# every sign as early or earlier and adds no false event, and 0.6 x 0.5 adds one (docs/smoothing.md).
ENTER_FRACTION = 0.8


class TrackerConfigError(ValueError):
    """A tracker parameter is out of range; the message names it."""


@dataclass(frozen=True)
class TrackerConfig:
    """Temporal smoothing of per-frame detections into tracks and events.

    Thresholds (hysteresis):
        enter_threshold: a detection must score at least this to start a track or count as a hit
            towards confirmation (from a ModelSpec: :data:`ENTER_FRACTION` x its operating threshold).
        stay_threshold: a confirmed track keeps being updated by detections down to this score.
    Confirmation:
        confirm_hits / confirm_window: confirmed when M of the last N frames of a track were hits
            (default 3 of 4). The event is emitted on the frame of the M-th hit.
    Association (greedy, highest affinity first):
        iou_gate: minimum IoU between a track's predicted box and a detection.
        centre_gate: when IoU is below the gate (a fast-growing box as the car approaches), a
            detection still matches if its centre lies within this many predicted box sizes of
            the predicted centre and its size is within ``max_scale_change`` of the prediction.
    Filter and timing:
        alpha, beta: gains of the alpha-beta filter on (cx, cy, log w, log h).
        score_alpha: weight of the newest score in the score EMA.
        max_age_s: a track coasts this long without a hit before it is deleted (time based, so it
            holds at any frame rate).
        hold_gap_s: when the source was down (a camera link that dropped and came back) for at
            most this long, the tracks are held across the outage: its time does not count
            towards ``max_age_s``, so a sign seen before and after the gap keeps its track and is
            not announced twice. After a longer outage every track ends (``stop_sign_lost``,
            reason ``source_gap``).
    Distance:
        sign_size_m: real height of the sign face (0.75 m: a common 750 mm stop sign).
        focal_px: camera focal length in pixels; None = take ``intrinsics.fy``, or unknown.
        intrinsics: the camera's pinhole intrinsics (e.g. a drive's meta.json), optional.
        The distance is null when neither gives a focal length (never a guess).
        speed_max_age_s: a speed reading older than this is ignored (time-to-sign null).
    """

    enter_threshold: float = 0.5
    stay_threshold: float = 0.3
    confirm_hits: int = 3
    confirm_window: int = 4
    iou_gate: float = 0.2
    centre_gate: float = 1.0
    max_scale_change: float = 2.0
    alpha: float = 0.6
    beta: float = 0.2
    score_alpha: float = 0.5
    max_age_s: float = 0.5
    hold_gap_s: float = 5.0
    sign_size_m: float = 0.75
    focal_px: float | None = None
    intrinsics: CameraIntrinsics | None = None
    speed_max_age_s: float = 1.0

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise TrackerConfigError(f"tracker {name}: {why}, got {getattr(self, name)!r}")

        for name in ("enter_threshold", "stay_threshold", "iou_gate", "alpha", "beta", "score_alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                fail(name, "must be in [0, 1]")
        if self.stay_threshold > self.enter_threshold:
            fail("stay_threshold", f"must not exceed enter_threshold {self.enter_threshold}")
        for name in ("confirm_hits", "confirm_window"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                fail(name, "must be an integer")
        if not (1 <= self.confirm_hits <= self.confirm_window):
            fail("confirm_hits", f"must be in [1, confirm_window={self.confirm_window}]")
        for name in ("centre_gate", "max_age_s", "sign_size_m", "speed_max_age_s"):
            if not getattr(self, name) > 0:
                fail(name, "must be > 0")
        if not (
            isinstance(self.hold_gap_s, (int, float))
            and math.isfinite(self.hold_gap_s)
            and self.hold_gap_s >= 0
        ):
            fail("hold_gap_s", "must be a finite number >= 0")
        if self.max_scale_change < 1:
            fail("max_scale_change", "must be >= 1")
        if self.focal_px is not None and not self.focal_px > 0:
            fail("focal_px", "must be > 0 or None")
        if self.intrinsics is not None and not isinstance(self.intrinsics, CameraIntrinsics):
            fail("intrinsics", "must be a CameraIntrinsics or None")

    @classmethod
    def from_spec(cls, spec: ModelSpec, **changes: object) -> TrackerConfig:
        """Enter at 0.8 x the model's ``operating_threshold`` and stay at 0.6 x the enter threshold,
        unless ``changes`` say otherwise (an ``enter_threshold`` given alone moves the stay one too)."""
        enter = float(changes.get("enter_threshold", ENTER_FRACTION * spec.operating_threshold))  # type: ignore[arg-type]
        values: dict[str, object] = {
            "enter_threshold": round(enter, 4),
            "stay_threshold": round(STAY_FRACTION * enter, 4),
        }
        values.update(changes)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def effective_focal_px(self) -> float | None:
        """The focal length the distance uses: ``focal_px``, else the intrinsics' ``fy``, else None."""
        if self.focal_px is not None:
            return self.focal_px
        return self.intrinsics.fy if self.intrinsics is not None else None

    def replace(self, **changes: object) -> TrackerConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line for the start-up log."""
        fields = dataclasses.asdict(self)
        fields["distance_focal_px"] = self.effective_focal_px
        return "tracker: " + ", ".join(f"{k}={v}" for k, v in fields.items())
