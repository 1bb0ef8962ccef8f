"""Stop-sign events and detector status on a CAN bus (``--can INTERFACE:CHANNEL``).

    edge-detect --source csi://0 --can socketcan:can0
    edge-detect --source drive://d --can remote:ws://127.0.0.1:54701/ --can-dbc my.dbc

Frames are defined by a DBC (``deploy/can/stopsign.dbc``, shipped as the default) and encoded by
cantools (:mod:`stopsign.edge.sinks.can_dbc`); python-can sends them. One thread of the sink's own
owns the bus:

- ``DetectorStatus`` goes out every ``1 / status_hz`` s on a fixed schedule, whatever the frame
  rate; what it says, and when it is withheld, is :mod:`stopsign.edge.sinks.can_status`.
- ``StopSignEvent``: ``on_event`` puts the event's values on a bounded queue and returns; the
  thread sends it at once (it does not wait for the next status slot). An event that could not be
  sent within ``max_event_age_s`` (the bus was down) is dropped and counted: a stop sign reported
  seconds late would mislead the planner more than a missing one, and the status's ``TrackedSigns``
  already says what is tracked now.
- A missing interface, a bus-off controller or a dead bridge: the error is logged, reported once as
  a ``sink_error`` status event (``sink_restored`` when it is back) and the bus is reopened after
  a backoff (1 s doubling to 10 s). Detection never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from stopsign.edge.sinks.base import FrameResult, Sink
from stopsign.edge.sinks.can_dbc import (
    DEFAULT_DBC,
    EVENT_MESSAGE,
    STATUS_MESSAGE,
    EncodedFrame,
    FrameEncoder,
    load_dbc,
)
from stopsign.edge.sinks.can_status import AHEAD, LOST, DetectorState, StatusTiming

log = logging.getLogger("stopsign.edge.sinks")

Report = Callable[[str, dict[str, Any]], None]


def parse_can_target(text: str) -> tuple[str, str]:
    """``INTERFACE:CHANNEL`` -> (interface, channel); the interface must be one python-can knows."""
    interface, sep, channel = text.partition(":")
    if not sep or not interface or not channel:
        raise ValueError(f"--can must be INTERFACE:CHANNEL (e.g. socketcan:can0), got {text!r}")
    if interface not in can.VALID_INTERFACES:
        known = ", ".join(sorted(can.VALID_INTERFACES))
        raise ValueError(f"--can {text!r}: unknown CAN interface {interface!r}; python-can knows {known}")
    return interface, channel


@dataclass(frozen=True)
class CanConfig:
    """``status_hz``: DetectorStatus rate (1/s); ``send_timeout_s``: how long one send may wait for
    room in the controller's queue; ``event_queue``: events waiting for the thread, at most."""

    target: str
    dbc: Path = DEFAULT_DBC
    status_hz: float = 10.0
    timing: StatusTiming = field(default_factory=StatusTiming)
    send_timeout_s: float = 0.05
    max_event_age_s: float = 1.0
    event_queue: int = 64
    retry_initial_s: float = 1.0
    retry_max_s: float = 10.0


@dataclass(frozen=True)
class _PendingEvent:
    queued_at: float  # monotonic s
    values: dict[str, float | str | None]


def event_signals(event: dict[str, Any], frame_size: tuple[int, int] | None) -> dict[str, float | str | None]:
    """StopSignEvent's physical values from a tracker event; the box in fractions of the image
    (SNA when no frame size is known yet)."""
    values: dict[str, float | str | None] = {
        "EventKind": event["event"],
        "TrackId": int(event["track_id"]) % 64,
        "Distance": event.get("distance_m"),
        "TimeToSign": event.get("time_to_sign_s"),
        "Confidence": float(event.get("score", 0.0)),
        "BoxCentreX": None,
        "BoxCentreY": None,
        "BoxHeight": None,
    }
    box = event.get("box")
    if frame_size is not None and box is not None:
        width, height = frame_size
        x1, y1, x2, y2 = (float(v) for v in box)
        values["BoxCentreX"] = (x1 + x2) / 2 / width
        values["BoxCentreY"] = (y1 + y2) / 2 / height
        values["BoxHeight"] = (y2 - y1) / height
    return values


class CanSink(Sink):
    """See the module docstring. ``report`` (the event channel's ``emit``) is only ever called from
    the loop's thread, in a hook, so a bus outage shows in the events stream like any sink's."""

    name = "can"

    def __init__(self, config: CanConfig, report: Report | None = None, database: Any = None) -> None:
        self.config = config
        self.interface, self.channel = parse_can_target(config.target)
        self._database = database if database is not None else load_dbc(config.dbc)
        self._report = report
        self.state = DetectorState(config.timing)
        self._events: queue.Queue[_PendingEvent | None] = queue.Queue(config.event_queue)
        self._notices: deque[tuple[str, dict[str, Any]]] = deque()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._bus: can.BusABC | None = None
        self.sent = {EVENT_MESSAGE: 0, STATUS_MESSAGE: 0}
        self.dropped_events = 0
        self.withheld_status = 0
        self._retry_s = config.retry_initial_s
        self._recovering = False  # a failure was reported; no frame has gone out since

    # --- the loop's side -----------------------------------------------------------------------

    def open(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._closing.clear()
        self.state.restart()
        self._thread = threading.Thread(target=self._run, name="can-sender", daemon=True)
        self._thread.start()

    def on_frame(self, result: FrameResult) -> None:
        self.state.on_frame(result)
        self._flush_notices()

    def on_event(self, event: dict[str, Any]) -> None:
        self.state.on_event(event)
        if event.get("event") in (AHEAD, LOST):
            pending = _PendingEvent(time.monotonic(), event_signals(event, self.state.frame_size))
            try:
                self._events.put_nowait(pending)
            except queue.Full:
                self.dropped_events += 1
                if self.dropped_events % 100 == 1:  # the first, then one line per 100
                    log.warning(
                        "can: %d events already wait for the bus; dropped %s (%d so far)",
                        self._events.qsize(),
                        event["event"],
                        self.dropped_events,
                    )
        self._flush_notices()

    def close(self) -> None:
        """Sends what is queued and a last ``stopping`` status, then releases the bus."""
        self.state.stop()
        if self._thread is None:
            return
        self._closing.set()
        # Wakes the thread at once; a full queue means it is awake anyway, with work to finish.
        with contextlib.suppress(queue.Full):
            self._events.put_nowait(None)
        self._thread.join(timeout=2.0)
        if self._thread.is_alive():
            log.warning("can: the sender thread did not finish within 2 s (a send is stuck in the driver)")
        self._thread = None

    def _flush_notices(self) -> None:
        while self._notices and self._report is not None:
            kind, fields = self._notices.popleft()
            self._report(kind, fields)

    # --- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        encoder = FrameEncoder(self._database)
        period = 1.0 / self.config.status_hz
        next_status = time.monotonic()
        withholding = False
        first_try = True
        while True:
            if self._bus is None and not self._closing.is_set():
                if not first_try:  # wait before every retry, after a failed open or a lost bus
                    if self._closing.wait(self._retry_s):
                        break
                    self._retry_s = min(self._retry_s * 2, self.config.retry_max_s)
                first_try = False
                if not self._connect():
                    continue
                next_status = time.monotonic()
            try:
                pending = self._events.get(timeout=max(0.0, next_status - time.monotonic()))
            except queue.Empty:
                pending = None
            if pending is not None:
                self._send_event(encoder, pending)
                continue
            if self._closing.is_set():
                break
            now = time.monotonic()
            if now < next_status:
                continue
            snapshot = self.state.snapshot()
            if snapshot is None:
                self.withheld_status += 1
                if not withholding:
                    log.warning(
                        "can: the detection loop has been silent for %.1f s; DetectorStatus is withheld "
                        "so the receiver's timeout trips",
                        self.state.loop_silent_s(),
                    )
                withholding = True
            else:
                if withholding:
                    log.warning("can: the detection loop is back; DetectorStatus resumes")
                withholding = False
                self._send(encoder.encode(STATUS_MESSAGE, snapshot.signals()))
            # A fixed schedule, so the rate does not drift with a late frame: the next slot stays
            # where it was (it may come soon after a late one); slots missed by more than a
            # period are skipped rather than sent in a burst.
            next_status += period
            if now - next_status > period:
                next_status = now + period
        self._drain(encoder)

    def _drain(self, encoder: FrameEncoder) -> None:
        while True:
            try:
                pending = self._events.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                self._send_event(encoder, pending)
        snapshot = self.state.snapshot()
        if snapshot is not None:
            self._send(encoder.encode(STATUS_MESSAGE, snapshot.signals()))
        self._disconnect()

    def _send_event(self, encoder: FrameEncoder, pending: _PendingEvent) -> None:
        age = time.monotonic() - pending.queued_at
        if self._bus is None or age > self.config.max_event_age_s:
            self.dropped_events += 1
            if self.dropped_events % 100 == 1:  # the first of an outage, then one line per 100
                log.warning(
                    "can: StopSignEvent %s (track %s) dropped after %.1f s without a bus (%d so far)",
                    pending.values["EventKind"],
                    pending.values["TrackId"],
                    age,
                    self.dropped_events,
                )
            return
        self._send(encoder.encode(EVENT_MESSAGE, pending.values))

    def _send(self, frame: EncodedFrame) -> None:
        if self._bus is None:
            return
        message = can.Message(
            arbitration_id=frame.frame_id,
            data=frame.data,
            is_extended_id=frame.extended,
            is_fd=frame.fd,
        )
        try:
            self._bus.send(message, timeout=self.config.send_timeout_s)
        except Exception as exc:  # any driver's failure (bus-off, ENOBUFS, a closed bridge) ends this bus
            self._failed(f"send on {self.config.target} failed", exc)
            self._disconnect()
            return
        self.sent[frame.message] += 1
        self._retry_s = self.config.retry_initial_s
        if self._recovering:
            self._recovering = False
            log.warning("can: %s is back", self.config.target)
            self._notices.append(("sink_restored", {"sink": self.name, "bus": self.config.target}))

    def _connect(self) -> bool:
        try:
            self._bus = can.Bus(interface=self.interface, channel=self.channel)
        except Exception as exc:  # python-can's drivers raise OSError, CanError or their own types
            self._failed(f"cannot open {self.config.target}", exc)
            return False
        return True

    def _failed(self, what: str, exc: Exception) -> None:
        """Logs and reports the first failure of an outage; the rest only at info level."""
        error = f"{type(exc).__name__}: {exc}"
        if self._recovering:
            log.info("can: %s again (%s)", what, error)
            return
        self._recovering = True
        log.warning(
            "can: %s (%s); detection goes on without it, retrying after %g s (doubling to %g s)",
            what,
            error,
            self._retry_s,
            self.config.retry_max_s,
        )
        fields = {"sink": self.name, "bus": self.config.target, "error": error, "retry_in_s": self._retry_s}
        self._notices.append(("sink_error", fields))

    def _disconnect(self) -> None:
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            bus.shutdown()
        except Exception as exc:  # a bus that failed may fail again on the way out: log it, go on
            log.info("can: shutting down %s failed: %s", self.config.target, exc)
            # Marks it shut down, so python-can does not try again (and fail loudly) when collected.
            can.BusABC.shutdown(bus)
