"""GStreamer source through PyGObject's ``appsink``.

Live sources (cameras, RTSP, paced test sources; GStreamer answers NO_PREROLL for them) use
``appsink max-buffers=1 drop=true sync=false`` and a capture thread that keeps only the newest
frame, so latency never grows when inference is slower than the camera; every frame replaced
before the consumer took it, and every gap in buffer offsets, counts as dropped. Ordered sources
(files, recorded drives) deliver every frame, pulled by the consumer.

Faults: bus errors, end-of-stream from an endless source (a network camera whose server went
away) and a watchdog (no frame for ``stall_timeout_s``, or ``open_timeout_s`` for a rebuilt
pipeline's first frame; an unplugged USB camera may post no bus message at all) tear the
pipeline down and rebuild it with a backoff doubling from ``backoff_initial_s`` to
``backoff_max_s``; each state change is reported. After a teardown the heap's free pages go
back to the kernel (``heap.py``), so RSS follows what is in use, not the heap's high-water mark.

Across a rebuild a live source keeps one timeline: each new pipeline's timestamps restart near
zero, so they are shifted to continue from the last delivered frame plus the wall-clock time the
source was down, and the first frame after the outage carries that time as ``Frame.gap_ns``
(the run decides what a gap means for tracking).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stopsign.edge.sources import gst_loader
from stopsign.edge.sources.base import Source, SourceError, SourceOpenError, SourceOptions, StatusReport
from stopsign.edge.sources.heap import release_free_heap
from stopsign.edge.sources.launch import SINK_NAME, LaunchCandidate, full_line
from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame

log = logging.getLogger(__name__)


_NONE_64 = (1 << 64) - 1  # GST_CLOCK_TIME_NONE and GST_BUFFER_OFFSET_NONE
_PULL_SLICE_NS = 100_000_000  # capture thread wakes this often to notice a stop request


class _StartError(Exception):
    def __init__(self, message: str, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal  # no point trying other candidates (device missing, permission)


@dataclass
class _Captured:
    pts_ns: int
    monotonic_ns: int
    image: np.ndarray


@dataclass
class _Generation:
    """One built pipeline and (live) its capture thread."""

    pipeline: Any
    sink: Any
    bus: Any
    live: bool
    fps: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    eos: bool = False
    last_offset: int | None = None
    offset_gaps: int = 0
    delivered: int = 0  # frames handed to the consumer
    pts_shift_ns: int = 0  # added to this pipeline's timestamps to continue the source's timeline


class GstSource(Source):
    """A GStreamer pipeline ending in ``appsink``; see the module docstring.

    Args:
        name: the source as the user gave it (for messages).
        target: the device, file or URL (for "cannot open" messages).
        candidates: launch lines tried in order at open (e.g. MJPG, YUYV, any).
        options: timeouts, backoff, live override.
        report: receives status events (``source_stalled``, ``source_restored``, ...).
        timestamps: recorded (pts_ns, monotonic_ns) per frame index (a recorded drive); these
            replace the pipeline's timestamps.
        clock: monotonic ns clock for capture times and the watchdog.
    """

    def __init__(
        self,
        name: str,
        target: str,
        candidates: Sequence[LaunchCandidate],
        options: SourceOptions,
        report: StatusReport,
        timestamps: Sequence[tuple[int, int]] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if not candidates:
            raise ValueError("GstSource needs at least one launch candidate")
        self._gst = gst_loader.load_gst()
        self.name, self.target = name, target
        self._candidates = list(candidates)
        self._candidate: LaunchCandidate = self._candidates[0]
        self.options, self._report, self._timestamps, self._clock = options, report, timestamps, clock
        self._gen: _Generation | None = None
        self._cond = threading.Condition()
        self._slot: _Captured | None = None
        self._replaced = 0
        self._stash: _Captured | None = None  # first frame pulled while opening (ordered mode)
        self._index = 0
        self._eos = False
        self._state = "closed"
        self._last_frame_ns = 0
        self._down_since_ns = 0
        self._attempts = 0
        self._delay_s = options.backoff_initial_s
        self._next_attempt_ns = 0
        self._offset_gaps_done = 0
        self._last_pts_ns: int | None = None  # timeline position of the last delivered frame
        self._last_capture_ns = 0  # and its capture time
        self.live = False
        self.description = ""
        self.decoder: str | None = None  # the video decoder element the pipeline runs, if any

    # --- public ------------------------------------------------------------------------------

    @property
    def eos(self) -> bool:
        return self._eos

    @property
    def state(self) -> str:
        return self._state

    @property
    def dropped(self) -> int:
        gaps = self._offset_gaps_done + (self._gen.offset_gaps if self._gen else 0)
        return self._replaced + gaps

    @property
    def fps(self) -> float | None:
        return self._gen.fps if self._gen else None

    @property
    def pipeline(self) -> Any:
        """The running ``Gst.Pipeline`` (None while rebuilding); for diagnostics and tests."""
        return self._gen.pipeline if self._gen else None

    def open(self) -> None:
        """Try each candidate until one delivers a frame; raise :class:`SourceOpenError` if none does."""
        errors: list[str] = []
        for candidate in self._candidates:
            try:
                gen = self._start(candidate)
            except _StartError as exc:
                errors.append(f"[{candidate.description}] {exc}")
                if exc.fatal:
                    break
                continue
            try:
                self._await_first_frame(gen)
            except _StartError as exc:
                self._teardown(gen)
                errors.append(f"[{candidate.description}] {exc}")
                if exc.fatal:
                    break
                continue
            self._gen, self._candidate = gen, candidate
            self.live = gen.live
            self.decoder = gst_loader.video_decoder_in(gen.pipeline)
            decoded = f", decoder {self.decoder}" if self.decoder else ""
            self.description = f"{candidate.description} ({'live' if gen.live else 'ordered'}{decoded})"
            self._state = "running"
            self._last_frame_ns = self._clock()
            log.info("opened %s: %s", self.name, full_line(candidate))
            return
        raise SourceOpenError(f"cannot open {self.target} ({self.name}): " + "; ".join(errors))

    def read(self, timeout_s: float) -> Frame | None:
        if self._eos or self._state == "closed":
            return None
        if self._gen is None:
            return self._wait_for_rebuild(timeout_s)
        error = self._poll_bus(self._gen)
        if error is not None:
            if not self.live:
                raise SourceError(f"{self.name}: GStreamer error: {error}")
            self._report("source_error", {"source": self.name, "error": error})
            self._go_down("error")
            return None
        captured = self._next_captured(self._gen, timeout_s)
        now = self._clock()
        if captured is not None:
            return self._deliver(captured, now)
        if self._gen.eos:
            if self.options.endless:
                self._report("source_error", {"source": self.name, "error": "end of stream"})
                self._go_down("end of stream")
                return None
            self._eos, self._state = True, "eos"
            return None
        # A rebuilt pipeline may take as long as opening did (an RTSP handshake) for its first frame.
        limit_s = self.options.stall_timeout_s if self._gen.delivered else self.options.open_timeout_s
        if now - self._last_frame_ns > limit_s * 1e9:
            if self.live:
                self._go_down("no frame")
            elif self._state == "running":
                self._state = "stalled"
                self._report("source_stalled", self._down_fields("no frame", now))
        return None

    def close(self) -> None:
        if self._gen is not None:
            self._teardown(self._gen)
            self._gen = None
            release_free_heap()  # after the last reference: the pipeline's blocks are freed by now
        self._state = "eos" if self._eos else "closed"

    # --- pipeline lifecycle -------------------------------------------------------------------

    def _start(self, candidate: LaunchCandidate) -> _Generation:
        gst = self._gst
        line = full_line(candidate)
        try:
            pipeline = gst.parse_launch(line)
        except Exception as exc:  # GLib.Error from the parser: unknown element, bad property
            raise _StartError(f"invalid pipeline {line!r}: {exc}", fatal=True) from None
        sink = pipeline.get_by_name(SINK_NAME)
        sink.set_property("sync", False)
        sink.set_property("emit-signals", False)
        bus = pipeline.get_bus()
        ret = pipeline.set_state(gst.State.PAUSED)
        if ret == gst.StateChangeReturn.FAILURE:
            error = self._bus_error(bus) or "state change to PAUSED failed"
            pipeline.set_state(gst.State.NULL)
            raise _StartError(error, fatal=gst_loader.is_fatal_bus_error(error))
        live = ret == gst.StateChangeReturn.NO_PREROLL if self.options.live is None else self.options.live
        # Live: one buffer, the newest; ordered: a few buffers of back-pressure, never dropped.
        sink.set_property("max-buffers", 1 if live else 4)
        sink.set_property("drop", live)
        gen = _Generation(pipeline, sink, bus, live)
        if pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            error = self._bus_error(bus) or "state change to PLAYING failed"
            self._teardown(gen)
            raise _StartError(error, fatal=gst_loader.is_fatal_bus_error(error))
        if live:
            gen.thread = threading.Thread(
                target=self._capture_loop, args=(gen,), name="edge-capture", daemon=True
            )
            gen.thread.start()
        return gen

    def _await_first_frame(self, gen: _Generation) -> None:
        deadline = time.monotonic() + self.options.open_timeout_s
        while time.monotonic() < deadline:
            error = self._poll_bus(gen)
            if error is not None:
                raise _StartError(error, fatal=gst_loader.is_fatal_bus_error(error))
            if gen.live:
                with self._cond:
                    if self._slot is not None:
                        return
                    self._cond.wait(0.05)
                continue
            sample = gen.sink.try_pull_sample(50_000_000)
            if sample is not None:
                self._stash = self._convert(sample, gen)
                return
            if gen.eos or gen.sink.is_eos():
                raise _StartError("stream ended before the first frame", fatal=True)
        raise _StartError(f"no frame within {self.options.open_timeout_s:g} s", fatal=False)

    def _teardown(self, gen: _Generation) -> None:
        gen.stop.set()
        gen.pipeline.set_state(self._gst.State.NULL)
        if gen.thread is not None:
            gen.thread.join(timeout=2.0)
        self._offset_gaps_done += gen.offset_gaps
        gen.offset_gaps = 0
        with self._cond:
            self._slot = None

    def _go_down(self, reason: str) -> None:
        """A live source stopped delivering: tear down, report, schedule a rebuild."""
        now = self._clock()
        if self._gen is not None:
            self._teardown(self._gen)
            self._gen = None
            release_free_heap()
        if self._state == "running":
            self._down_since_ns = now
            self._report("source_stalled", self._down_fields(reason, now))
        else:
            self._report(
                "source_rebuild_failed",
                {"source": self.name, "attempt": self._attempts, "reason": reason},
            )
            self._delay_s = min(self._delay_s * 2, self.options.backoff_max_s)
        self._state = "stalled"
        self._next_attempt_ns = now + int(self._delay_s * 1e9)

    def _wait_for_rebuild(self, timeout_s: float) -> Frame | None:
        now = self._clock()
        if now < self._next_attempt_ns:
            time.sleep(min(timeout_s, (self._next_attempt_ns - now) / 1e9))
            return None
        self._attempts += 1
        self._state = "rebuilding"
        self._report(
            "source_rebuilding",
            {"source": self.name, "attempt": self._attempts, "after_s": round(self._delay_s, 3)},
        )
        try:
            self._gen = self._start(self._candidate)
        except _StartError as exc:
            self._go_down(str(exc))
            return None
        self._last_frame_ns = self._clock()  # the watchdog gives the new pipeline a full timeout
        return None

    def _deliver(self, captured: _Captured, now: int) -> Frame:
        gen = self._gen
        assert gen is not None  # a frame comes only from a running pipeline
        pts, mono, gap_ns = captured.pts_ns, captured.monotonic_ns, 0
        if gen.delivered == 0 and self._index > 0:
            # First frame of a rebuilt pipeline: continue the timeline across the outage.
            gap_ns = max(0, mono - self._last_capture_ns)
            if pts != NO_TIMESTAMP and self._last_pts_ns is not None:
                gen.pts_shift_ns = self._last_pts_ns + gap_ns - pts
        gen.delivered += 1
        if pts != NO_TIMESTAMP:
            pts += gen.pts_shift_ns
            self._last_pts_ns = pts
        self._last_capture_ns = mono
        if self._state != "running":
            self._report(
                "source_restored",
                {
                    "source": self.name,
                    "attempts": self._attempts,
                    "down_s": round((now - self._down_since_ns) / 1e9, 3),
                    "gap_s": round(gap_ns / 1e9, 3),
                },
            )
            self._state, self._attempts, self._delay_s = "running", 0, self.options.backoff_initial_s
        self._last_frame_ns = now
        if self._timestamps is not None:
            if self._index >= len(self._timestamps):
                raise SourceError(f"{self.name}: frame {self._index} has no line in frames.jsonl")
            pts, mono = self._timestamps[self._index]
        frame = Frame(self._index, pts, mono, captured.image, gap_ns=gap_ns)
        self._index += 1
        return frame

    def _down_fields(self, reason: str, now: int) -> dict[str, Any]:
        return {
            "source": self.name,
            "reason": reason,
            "since_last_frame_s": round((now - self._last_frame_ns) / 1e9, 3),
        }

    # --- frames -------------------------------------------------------------------------------

    def _next_captured(self, gen: _Generation, timeout_s: float) -> _Captured | None:
        captured: _Captured | None
        if self._stash is not None:
            captured, self._stash = self._stash, None
            return captured
        if gen.live:
            with self._cond:
                if self._slot is None and not gen.eos:
                    self._cond.wait(timeout_s)
                captured, self._slot = self._slot, None
            return captured
        sample = gen.sink.try_pull_sample(int(timeout_s * 1e9))
        if sample is None:
            gen.eos = gen.eos or gen.sink.is_eos()
            return None
        return self._convert(sample, gen)

    def _capture_loop(self, gen: _Generation) -> None:
        """Live mode: pull every sample as it arrives, keep only the newest in the slot."""
        while not gen.stop.is_set():
            sample = gen.sink.try_pull_sample(_PULL_SLICE_NS)
            if sample is None:
                if gen.sink.is_eos():
                    with self._cond:
                        gen.eos = True
                        self._cond.notify_all()
                    return
                continue
            captured = self._convert(sample, gen)
            with self._cond:
                if gen.stop.is_set():
                    return
                if self._slot is not None:
                    self._replaced += 1
                self._slot = captured
                self._cond.notify_all()

    def _convert(self, sample: Any, gen: _Generation) -> _Captured:
        """Sample -> (H, W, 3) uint8 view of one copy of the buffer (rows may be padded to 4 bytes)."""
        now = self._clock()
        buffer = sample.get_buffer()
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        if gen.fps is None:
            ok, num, den = structure.get_fraction("framerate")
            gen.fps = num / den if ok and den and num else None
        offset = buffer.offset
        if offset != _NONE_64:
            if gen.last_offset is not None and offset > gen.last_offset + 1:
                gen.offset_gaps += offset - gen.last_offset - 1
            gen.last_offset = offset
        data = buffer.extract_dup(0, buffer.get_size())
        stride = len(data) // height
        if stride < width * 3:
            raise SourceError(
                f"{self.name}: buffer of {len(data)} bytes is too small for {width}x{height} BGR"
            )
        image = np.ndarray((height, width, 3), np.uint8, buffer=data, strides=(stride, 3, 1))
        pts = buffer.pts if buffer.pts != _NONE_64 else NO_TIMESTAMP
        return _Captured(pts, now, image)

    # --- bus ----------------------------------------------------------------------------------

    def _poll_bus(self, gen: _Generation) -> str | None:
        """Drain the bus: returns the first error text (None when none); notes EOS."""
        gst = self._gst
        mask = gst.MessageType.ERROR | gst.MessageType.EOS | gst.MessageType.WARNING
        while True:
            message = gen.bus.pop_filtered(mask)
            if message is None:
                return None
            if message.type == gst.MessageType.EOS:
                gen.eos = True
            elif message.type == gst.MessageType.WARNING:
                warning, debug = message.parse_warning()
                log.warning("%s: GStreamer warning: %s (%s)", self.name, warning.message, debug)
            else:
                return gst_loader.format_bus_error(message)

    def _bus_error(self, bus: Any) -> str | None:
        message = bus.pop_filtered(self._gst.MessageType.ERROR)
        return gst_loader.format_bus_error(message) if message is not None else None
