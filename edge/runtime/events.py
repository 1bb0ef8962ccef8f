"""The event channel: tracker events and status events, as dicts, to every sink that takes events.

A status event is ``{"event": kind, "time": unix s, "monotonic_ns": ..., "frame": last frame
index or None, ...fields}``; kinds: heartbeat, source_stalled, source_rebuilding,
source_rebuild_failed, source_restored, source_error, backend_error, backend_reinit, over_budget,
frame_rejected, timestamp_jump, caps_change, sink_error, sink_restored, started, stopped, tiles.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any, Protocol


class EventReceiver(Protocol):
    def on_event(self, event: dict[str, Any]) -> None: ...


def event_to_dict(event: Any) -> dict[str, Any]:
    """A tracker event (``to_dict()``, ``to_json()``, a dataclass or a dict) as a plain dict."""
    if isinstance(event, dict):
        return event
    if hasattr(event, "to_dict"):
        return dict(event.to_dict())
    if hasattr(event, "to_json"):
        return dict(json.loads(event.to_json()))
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        return dataclasses.asdict(event)
    raise TypeError(f"cannot turn a {type(event).__name__} into an event record")


class EventChannel:
    """Stamps and fans out events. ``frame`` is the index of the last frame read (context)."""

    def __init__(
        self,
        clock: Callable[[], int] = time.monotonic_ns,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.receivers: list[EventReceiver] = []
        self.frame: int | None = None
        self.counts: dict[str, int] = {}
        self._clock, self._wall = clock, wall_clock

    def emit(self, kind: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": kind,
            "time": round(self._wall(), 3),
            "monotonic_ns": self._clock(),
            "frame": self.frame,
        }
        event.update(fields or {})
        self.forward(event)
        return event

    def forward(self, event: dict[str, Any]) -> None:
        kind = str(event.get("event", event.get("type", "?")))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        for receiver in list(self.receivers):
            receiver.on_event(event)


class RateLimiter:
    """Lets a repeated report through at most once per ``interval_s`` per key, counting the rest."""

    def __init__(self, interval_s: float, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.interval_ns = int(interval_s * 1e9)
        self._clock = clock
        self._last: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None when suppressed, else how many reports of ``key`` were suppressed since the last one."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_ns:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
