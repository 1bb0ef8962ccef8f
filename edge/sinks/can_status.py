"""What ``DetectorStatus`` says, worked out from what the loop hands the CAN sink.

The loop calls the sink for every frame (``on_frame``) and every event (``on_event``); the status
is sent by the sink's own thread at a fixed rate, so it reads this state under a lock.

When the loop stalls, the status goes through two stages (``docs/reliability.md``):

1. No frame processed for ``stale_frame_s`` (0.5 s): the state says ``stalled_source``. The loop
   still runs (it reports the stall and beats once a second), so the detector can vouch that it is
   blind, and the car learns it within half a second, before any timeout of its own.
2. No call from the loop at all for ``loop_timeout_s`` (2 s, above the loop's 1 s heartbeat):
   the status is **withheld**, and the receiver's message timeout trips. A hung loop can vouch for
   nothing, and a counter that a healthy thread kept incrementing on its behalf would tell the car
   the detector is alive when it is frozen: the alive counter must stop with the function it guards.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stopsign.edge.sinks.base import FrameResult

AHEAD, LOST = "stop_sign_ahead", "stop_sign_lost"


@dataclass(frozen=True)
class StatusTiming:
    """Seconds. ``report_hold_s``: a backend_error or over_budget report colours the state this long."""

    stale_frame_s: float = 0.5
    loop_timeout_s: float = 2.0
    report_hold_s: float = 1.5
    fps_window_s: float = 1.0


@dataclass(frozen=True)
class StatusSnapshot:
    """One ``DetectorStatus``: state name, fps (1/s), p99 latency (ms, None before the first health
    interval), confirmed signs tracked now."""

    state: str
    fps: float
    latency_p99_ms: float | None
    tracked_signs: int

    def signals(self) -> dict[str, float | str | None]:
        return {
            "State": self.state,
            "Fps": self.fps,
            "LatencyP99": self.latency_p99_ms,
            "TrackedSigns": self.tracked_signs,
        }


class DetectorState:
    """Fed by the loop's thread, read by the sender's; times from ``clock`` (monotonic s)."""

    def __init__(self, timing: StatusTiming, clock: Callable[[], float] = time.monotonic) -> None:
        self.timing, self._clock = timing, clock
        self._lock = threading.Lock()
        now = clock()
        self._last_call = now  # any hook from the loop: it is alive
        self._last_processed: float | None = None
        self._processed_times: deque[float] = deque()
        self._last_backend_error = -float("inf")
        self._last_over_budget = -float("inf")
        self._p99_ms: float | None = None
        self._tracks: set[int] = set()
        self._stopping = False
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the last frame, pixels

    def on_frame(self, result: FrameResult) -> None:
        now = self._clock()
        with self._lock:
            self._last_call = now
            height, width = result.frame.image.shape[:2]
            self.frame_size = (int(width), int(height))
            if result.detections is not None:
                self._last_processed = now
                self._processed_times.append(now)
            elif result.rejected is None:  # inference failed on this frame
                self._last_backend_error = now

    def on_event(self, event: dict[str, Any]) -> None:
        now = self._clock()
        kind = event.get("event")
        with self._lock:
            self._last_call = now
            if kind == AHEAD:
                self._tracks.add(int(event["track_id"]))
            elif kind == LOST:
                self._tracks.discard(int(event["track_id"]))
            elif kind == "heartbeat":
                p99 = event.get("p99_ms")
                self._p99_ms = float(p99) if p99 is not None else self._p99_ms
            elif kind in ("backend_error", "backend_reinit"):
                self._last_backend_error = now
            elif kind == "over_budget":
                self._last_over_budget = now
            elif kind == "stopped":
                self._stopping = True

    def stop(self) -> None:
        with self._lock:
            self._stopping = True

    def restart(self) -> None:
        """The sink was reopened (after a failure): no longer stopping; the loop counts as alive."""
        with self._lock:
            self._stopping = False
            self._last_call = self._clock()

    def loop_silent_s(self) -> float:
        with self._lock:
            return self._clock() - self._last_call

    def snapshot(self) -> StatusSnapshot | None:
        """The status to send now, or None to withhold it (the loop is stalled, see the module doc)."""
        now = self._clock()
        timing = self.timing
        with self._lock:
            while self._processed_times and self._processed_times[0] <= now - timing.fps_window_s:
                self._processed_times.popleft()
            fps = len(self._processed_times) / timing.fps_window_s
            if self._stopping:
                state = "stopping"
            elif now - self._last_call > timing.loop_timeout_s:
                return None
            elif self._last_processed is None:
                state = "starting"
            elif now - self._last_processed > timing.stale_frame_s:
                state = "stalled_source"
            elif now - self._last_backend_error <= timing.report_hold_s:
                state = "backend_error"
            elif now - self._last_over_budget <= timing.report_hold_s:
                state = "over_budget"
            else:
                state = "ok"
            return StatusSnapshot(state, fps, self._p99_ms, len(self._tracks))
