"""What is known about one frame after processing: its detections and its stage timings.

The record the loop hands every output (``stopsign.edge.sinks``) and the health window.
"""

from __future__ import annotations

from dataclasses import dataclass

from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.frame import Frame

STAGES = ("capture_age", "preprocess", "infer", "postprocess", "track", "sinks", "total")


@dataclass
class FrameTimings:
    """Milliseconds per stage of one frame; ``capture_age`` is capture -> processing start
    (None for ordered sources, whose capture time is a recording's), ``total`` is processing up to
    the tracker's result (sinks excluded, timed as ``sinks``), ``latency`` = capture age + total."""

    capture_age: float | None = None
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    track: float = 0.0
    sinks: float = 0.0
    total: float = 0.0

    @property
    def latency(self) -> float:
        return self.total + (self.capture_age or 0.0)

    def to_dict(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {s: getattr(self, s) for s in STAGES}
        return {k: (round(v, 3) if v is not None else None) for k, v in out.items()}


@dataclass
class FrameResult:
    """What the loop knows about one frame after processing it.

    ``detections`` is None when the frame was rejected (``rejected`` says why) or inference failed.
    """

    frame: Frame
    detections: Detections | None
    timings: FrameTimings
    rejected: str | None = None
