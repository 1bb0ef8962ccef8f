"""The detection loop: source -> content checks -> inference -> tracker -> sinks, one straight line.

How a frame becomes detections (host batch or device frame path) is chosen once at start-up
(:mod:`stopsign.edge.runtime.inference`), so the loop has no branch on backend capabilities.
Per frame, no full-size array is allocated by the loop: the letterbox and the network input live
in buffers made once. Stage timings are measured per frame; health is
reported once a second (heartbeat event, stderr line, systemd watchdog).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.runtime.events import EventChannel, RateLimiter, event_to_dict
from stopsign.edge.runtime.health import FrameTimings, HealthWindow, health_line
from stopsign.edge.runtime.inference import (
    BackendSupervisor,
    FatalBackendError,
    InferencePath,
    choose_inference_path,
)
from stopsign.edge.runtime.sdnotify import SdNotifier
from stopsign.edge.sinks import FrameResult, GuardedSink
from stopsign.edge.sources.base import Source
from stopsign.edge.sources.sanity import FrameSanity, SanityOptions
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame
from stopsign.edge.vision.tiles import Tile, TileConfig

log = logging.getLogger(__name__)

# Re-exported: they lived here before the inference path had a module of its own.
__all__ = [
    "BackendSupervisor",
    "DetectionLoop",
    "FatalBackendError",
    "LoopConfig",
    "LoopSummary",
    "TrackerLike",
    "default_health_stream",
]


class TrackerLike(Protocol):
    """What the loop needs from ``stopsign.edge.tracking`` (events: dicts or objects with to_dict/to_json)."""

    def update(self, detections: Detections, frame_index: int, timestamp_ns: int) -> list[Any]: ...

    def reset(self, reason: str, frame_index: int, timestamp_ns: int) -> Any: ...

    def bridge_gap(self, gap_ns: int, frame_index: int, timestamp_ns: int) -> Any: ...

    def flush(self) -> Any: ...


@dataclass(frozen=True)
class LoopConfig:
    """Loop settings. ``conf``: detection floor; ``iou``: NMS IoU (None: the ModelSpec's);
    ``budget_ms``: latency budget (capture -> result); ``max_frames``: stop after this many frames
    read (0: no limit); ``max_consecutive_failures``: backend failures before re-initialising it."""

    conf: float = 0.25
    iou: float | None = None
    budget_ms: float = 100.0
    max_frames: int = 0
    heartbeat_s: float = 1.0
    health_stream: IO[str] | None = None
    max_consecutive_failures: int = 3
    read_timeout_s: float = 0.1
    sanity: SanityOptions = field(default_factory=SanityOptions)
    # High-resolution tiles batched with the whole frame (stopsign.edge.vision.tiles); principal point
    # (cx, cy) of the camera in frame pixels places the ``auto`` band on video.
    tiles: TileConfig = field(default_factory=TileConfig)
    principal_point: tuple[float, float] | None = None


@dataclass
class LoopSummary:
    frames: int = 0
    processed: int = 0
    rejected: int = 0
    backend_errors: int = 0
    dropped: int = 0
    eos: bool = False
    stopped_by: str = ""


class DetectionLoop:
    """Reads frames until EOS, ``stop`` is set or ``max_frames``; see the module docstring.

    Args:
        source: an opened source.
        backend: supervised backend (already loaded).
        spec: the model's ModelSpec.
        channel: event channel (receivers: the event-taking sinks).
        sinks: guarded sinks receiving every frame result.
        tracker: temporal smoother/tracker, or None (still images, or not built yet).
        notifier: systemd notifier (READY/WATCHDOG), or None.
        stop: set from a signal handler to end the run cleanly.
        clock: monotonic ns clock.
    """

    def __init__(
        self,
        source: Source,
        backend: BackendSupervisor,
        spec: ModelSpec,
        config: LoopConfig,
        channel: EventChannel,
        sinks: list[GuardedSink],
        tracker: TrackerLike | None = None,
        notifier: SdNotifier | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.source, self.backend, self.spec, self.config = source, backend, spec, config
        self.channel, self.sinks, self.tracker, self.notifier = channel, sinks, tracker, notifier
        self.stop = stop or threading.Event()
        self._clock = clock
        self._still = source.description.startswith("images")
        iou = config.iou if config.iou is not None else spec.nms_iou
        self.inference: InferencePath = choose_inference_path(
            backend, spec, config.tiles, self._still, config.principal_point, config.conf, iou
        )
        self._sanity = None if self._still else FrameSanity(config.sanity, source.live)
        self._limiter = RateLimiter(1.0, clock)
        self._health = HealthWindow(config.budget_ms)
        self.summary = LoopSummary()
        self.last_health: dict[str, Any] = {}

    def run(self) -> LoopSummary:
        now = self._clock()
        self._health.start(now, self.source.dropped, 0)
        next_beat = now + int(self.config.heartbeat_s * 1e9)
        watchdog_s = self.notifier.watchdog_interval_s if self.notifier is not None else None
        next_watchdog = now
        if self.notifier is not None:
            self.notifier.notify("READY=1")
        while not self.stop.is_set():
            if self.config.max_frames and self.summary.frames >= self.config.max_frames:
                self.summary.stopped_by = "max_frames"
                break
            frame = self.source.read(self.config.read_timeout_s)
            if frame is not None:
                self.summary.frames += 1
                self.channel.frame = frame.index
                self._process(frame)
            elif self.source.eos:
                self.summary.eos, self.summary.stopped_by = True, "eos"
                break
            now = self._clock()
            if now >= next_beat:
                self._heartbeat(now)
                next_beat = now + int(self.config.heartbeat_s * 1e9)
            if watchdog_s is not None and now >= next_watchdog and self.notifier is not None:
                # Only a loop that is alive reaches here; a stalled source is reported, not fatal.
                self.notifier.notify("WATCHDOG=1")
                next_watchdog = now + int(watchdog_s * 1e9)
        if self.stop.is_set() and not self.summary.stopped_by:
            self.summary.stopped_by = "signal"
        self._finish()
        return self.summary

    # --- one frame ---------------------------------------------------------------------------

    def _process(self, frame: Frame) -> None:
        t0 = self._clock()
        timings = FrameTimings(capture_age=(t0 - frame.monotonic_ns) / 1e6 if self.source.live else None)
        timestamp = frame.pts_ns if frame.pts_ns != NO_TIMESTAMP else frame.monotonic_ns
        if frame.gap_ns and self.tracker is not None:
            # The source was down (a camera link dropped): hold the tracks or end them.
            self._forward(self.tracker.bridge_gap(frame.gap_ns, frame.index, timestamp))
        new_plan = self.inference.prepare(frame)
        reject = self._check(frame, timestamp)
        if new_plan is not None:  # after a caps_change notice, which says why the plan changed
            self._announce_tiles(frame, new_plan)
        if reject is not None:
            self._reject(frame, reject, timings, t0)
            return
        t1 = self._clock()
        detections, t2 = self.inference.detect(frame, self._clock)
        t3 = t4 = self._clock()
        events: Any = None
        if detections is None:
            self._health.backend_errors += 1
            self.summary.backend_errors += 1
            t3 = t4 = t2
        elif self.tracker is not None:
            events = self.tracker.update(detections, frame.index, timestamp)
            t4 = self._clock()
        timings.preprocess, timings.infer = (t1 - t0) / 1e6, (t2 - t1) / 1e6
        timings.postprocess, timings.track = (t3 - t2) / 1e6, (t4 - t3) / 1e6
        self._forward(events)
        timings.total = (t4 - t0) / 1e6  # the result is ready; sinks are timed on their own
        result = FrameResult(frame, detections, timings)
        for sink in self.sinks:
            sink.on_frame(result)
        timings.sinks = (self._clock() - t4) / 1e6
        if detections is not None:
            self.summary.processed += 1
            self._health.add(timings)
            if timings.latency > self.config.budget_ms:
                self._over_budget(timings)

    def _check(self, frame: Frame, timestamp: int) -> str | None:
        """The frame's content checks (video only); returns why the frame is rejected, or None.

        They look at the letterboxed copy when the path staged one: a second pass over a 720p
        frame cost ~0.2 ms and evicted the model's data from the cache.
        """
        if self._sanity is None:
            return None
        verdict = self._sanity.check(frame, self.inference.content)
        for kind, fields in verdict.notices:
            self.channel.emit(kind, fields)
        if verdict.reset_tracking and self.tracker is not None:
            self._forward(self.tracker.reset(verdict.notices[0][0], frame.index, timestamp))
        return verdict.reject

    def _over_budget(self, timings: FrameTimings) -> None:
        suppressed = self._limiter.allow("over_budget")
        if suppressed is not None:
            self.channel.emit(
                "over_budget",
                {
                    "latency_ms": round(timings.latency, 2),
                    "budget_ms": self.config.budget_ms,
                    "suppressed": suppressed,
                    "ms": timings.to_dict(),
                },
            )

    def _announce_tiles(self, frame: Frame, plan: list[Tile]) -> None:
        """A ``tiles`` status line whenever the tile plan is made (first frame, new frame size)."""
        height, width = frame.image.shape[:2]
        tiles = [tile.as_text() for tile in plan]
        self.channel.emit(
            "tiles", {"mode": self.config.tiles.text(), "frame_size": f"{width}x{height}", "tiles": tiles}
        )
        if self.config.health_stream is not None:
            print(
                f"edge-detect tiles ({self.config.tiles.text()}): {width}x{height} frame -> whole frame + "
                f"{len(tiles)} tile(s) {'; '.join(tiles) or '(the frame fits the input: none needed)'}",
                file=self.config.health_stream,
                flush=True,
            )

    def _reject(self, frame: Frame, reason: str, timings: FrameTimings, t0: int) -> None:
        self.summary.rejected += 1
        self._health.rejected += 1
        suppressed = self._limiter.allow(f"frame_rejected:{reason}")
        if suppressed is not None:
            self.channel.emit("frame_rejected", {"reason": reason, "suppressed": suppressed})
        timings.total = (self._clock() - t0) / 1e6
        result = FrameResult(frame, None, timings, rejected=reason)
        for sink in self.sinks:
            sink.on_frame(result)

    def _forward(self, events: Any) -> None:
        for event in events or ():
            self.channel.forward(event_to_dict(event))

    # --- health and shutdown -----------------------------------------------------------------

    def _heartbeat(self, now: int) -> None:
        delivered = self.summary.frames
        figures = self._health.snapshot(now, self.source.dropped, delivered)
        backend = self.backend.backend.name
        figures.update(
            {
                "backend": backend,
                "source_state": self.source.state,
                "frames": self.summary.frames,
                "dropped_total": self.source.dropped,
            }
        )
        self.last_health = figures
        self.channel.emit("heartbeat", figures)
        if self.config.health_stream is not None:
            print(
                health_line(figures, backend, self.source.state), file=self.config.health_stream, flush=True
            )
        self._health.start(now, self.source.dropped, delivered)

    def _finish(self) -> None:
        self.summary.dropped = self.source.dropped
        if self.tracker is not None:
            self._forward(self.tracker.flush())
        if self.notifier is not None:
            self.notifier.notify("STOPPING=1")


def default_health_stream() -> IO[str]:
    return sys.stderr
