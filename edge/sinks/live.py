"""What the live outputs (``view``: a web page, ``foxglove``: Foxglove WebSocket) share.

- where to listen (:func:`parse_listen_address`, loopback unless told otherwise);
- :class:`LatestFrame`: the one-slot buffer between the detection loop and the server's thread. The
  loop only drops a reference into it (no copy, no wait); the server takes the newest at its own
  rate, so a slow or stalled client costs frames, never the loop's time;
- what is drawn besides the detections: the tracker's tracks (:class:`TrackOverlay`) and the tile
  plan (:func:`tiles_from_event`).

The frame's image is not copied: every source hands the loop a fresh array per frame and never
writes it again (GStreamer: ``extract_dup`` of each buffer; OpenCV: ``read()`` allocates), which
``tests/edge/sinks/test_view.py`` checks on a recorded drive. The server copies it once, into its
own drawing buffer, when it encodes.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import numpy as np

from stopsign.edge.sinks.base import FrameResult

DEFAULT_HOST = "127.0.0.1"


class ListenAddressError(ValueError):
    """A ``[HOST:]PORT`` is malformed; the message quotes it and names the flag."""


def parse_listen_address(text: str, flag: str, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """``"8080"`` -> (default_host, 8080); ``"0.0.0.0:8080"``, ``"[::]:8080"``, ``"localhost:0"``.

    Port 0 asks the system for a free port (the server prints the one it got).
    """
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenAddressError(f"{flag} {text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ListenAddressError(f"{flag} must be [HOST:]PORT with PORT in 0..65535, got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; any other name or address reaches the network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def url_host(host: str) -> str:
    """``host`` as it is written in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class TrackOverlay:
    """One track as drawn: ``box`` xyxy in frame pixels, ``distance_m`` None without a focal length."""

    track_id: int
    box: tuple[float, float, float, float]
    score: float
    confirmed: bool
    distance_m: float | None

    @classmethod
    def of(cls, track: Any) -> TrackOverlay:
        """From a ``stopsign.edge.tracking.Track`` (read on the loop's thread, where it is updated)."""
        x1, y1, x2, y2 = (float(v) for v in track.box)
        distance = track.distance_m
        return cls(
            int(track.track_id),
            (x1, y1, x2, y2),
            float(track.score),
            bool(track.confirmed),
            None if distance is None else float(distance),
        )


# Returns the tracker's current tracks; called on the loop's thread only (tracks change there).
TrackProvider = Callable[[], Sequence[TrackOverlay]]


def tiles_from_event(event: dict[str, Any]) -> tuple[tuple[int, int, int, int], ...] | None:
    """The tile plan (x, y, w, h per tile, frame pixels) of a ``tiles`` status event, else None."""
    if event.get("event") != "tiles":
        return None
    plan = []
    for text in event.get("tiles") or ():
        x, y, w, h = (int(v) for v in str(text).split(","))
        plan.append((x, y, w, h))
    return tuple(plan)


@dataclass(frozen=True)
class Snapshot:
    """What the loop handed over for one frame: its result and the tracks as they were then."""

    sequence: int
    result: FrameResult
    tracks: tuple[TrackOverlay, ...]


class LatestFrame:
    """One slot holding the newest frame result; the loop writes, the server's thread reads.

    ``put`` is a reference assignment (atomic under the GIL) plus a counter: it never waits and
    never copies. ``take`` returns the newest snapshot not yet taken by that reader, or None.
    """

    def __init__(self) -> None:
        self._slot: Snapshot | None = None
        self._sequence = 0
        self.wanted = threading.Event()  # set while someone watches: the loop skips work otherwise

    def put(self, result: FrameResult, tracks: tuple[TrackOverlay, ...]) -> None:
        self._sequence += 1
        self._slot = Snapshot(self._sequence, result, tracks)

    def take(self, after: int) -> Snapshot | None:
        """The newest snapshot with a sequence above ``after`` (the last one this reader took)."""
        snapshot = self._slot
        if snapshot is None or snapshot.sequence <= after:
            return None
        return snapshot

    def clear(self) -> None:
        """Drop the reference (nobody watches: the frame's memory can go)."""
        self._slot = None


def snapshot_tracks(provider: TrackProvider | None) -> tuple[TrackOverlay, ...]:
    return tuple(provider()) if provider is not None else ()


def track_provider(tracker: Any) -> TrackProvider | None:
    """The tracks of a ``stopsign.edge.tracking.Tracker`` (anything with ``tracks``) as drawn;
    None without a tracker (still images)."""
    if tracker is None or not hasattr(tracker, "tracks"):
        return None
    return lambda: [TrackOverlay.of(track) for track in tracker.tracks]


def missing_libraries(view: bool, foxglove: bool) -> str | None:
    """What the asked-for live outputs need and this install lacks, as one message; else None."""
    wanted = (("aiohttp", "--view", view), ("foxglove", "--foxglove", foxglove))
    missing = [f"{module} (for {flag})" for module, flag, on in wanted if on and find_spec(module) is None]
    if not missing:
        return None
    return f"{', '.join(missing)} not installed: pip install 'stopsign-edge[live]'"


def width_problem(max_width: int, what: str) -> str | None:
    """Why ``max_width`` is no width a live output can scale to (0 means full size), or None."""
    if max_width != 0 and not 160 <= max_width <= 7680:
        return f"{what} width must be 0 (full size) or 160-7680 px, got {max_width}"
    return None


def scaled_to_width(image: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """``image`` scaled down to ``max_width`` (0: never) and the factor applied to its pixels."""
    import cv2

    height, width = image.shape[:2]
    if not max_width or width <= max_width:
        return image, 1.0
    scale = max_width / width
    size = (max_width, max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale  # boxes stay legible
