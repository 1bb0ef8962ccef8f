"""Foxglove live (``--foxglove [HOST:]PORT``): image, boxes, events and health over the Foxglove
WebSocket protocol, served by ``foxglove-sdk`` (its server speaks the ``foxglove.sdk.v1``
subprotocol, the same protocol as ``foxglove.websocket.v1`` under a new name).

Channels (the SDK's own Foxglove schemas, protobuf; the topics, frame id and annotation schema
of the ROS 2 bag output, ``--bag-out`` in ``sinks/bag.py``, so one Foxglove layout serves both):

- ``/stopsign/image/compressed``: ``foxglove.CompressedImage``, JPEG of the frame as captured,
  stamped with its capture time on the wall clock (:func:`capture_wall_ns`);
- ``/stopsign/annotations``: ``foxglove.ImageAnnotations`` over that image, same timestamp:
  detections (green boxes, class and score), tracks (id and distance; a confirmed sign red and
  thick) and the tile plan (orange), in frame pixels;
- ``/stopsign/events``: every event but the heartbeat, JSON, as on the events channel;
- ``/stopsign/health``: the 1 Hz heartbeat, JSON (fps, p50/p99 against the budget, drops, ...).

Same rules as the live page (``view``): the loop only drops a reference into a one-slot buffer,
and only while a client subscribes to the image or the annotations; a thread of this sink
encodes and publishes at most ``fps`` times a second. The SDK gives each client a bounded queue
(``message_backlog_size``) that drops the oldest message when a client does not read, so a
stalled client never holds up this thread, let alone the loop. The protocol has no
authentication: ``edge-detect`` refuses any address but loopback (use an SSH tunnel).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2

from stopsign.edge.sinks.base import FrameResult, Sink
from stopsign.edge.sinks.live import (
    DEFAULT_HOST,
    LatestFrame,
    Snapshot,
    TrackProvider,
    is_loopback,
    scaled_to_width,
    snapshot_tracks,
    tiles_from_event,
    width_problem,
)

log = logging.getLogger("stopsign.edge.sinks.foxglove")

IMAGE_TOPIC = "/stopsign/image/compressed"
ANNOTATIONS_TOPIC = "/stopsign/annotations"
EVENTS_TOPIC = "/stopsign/events"
HEALTH_TOPIC = "/stopsign/health"
FRAME_ID = "camera"

# RGBA in 0..1, as foxglove.Color takes them (the page's colours, drawn by draw.py in BGR).
DETECTION_RGBA = (0.0, 1.0, 0.0, 1.0)
TRACK_RGBA = (0.0, 0.8, 1.0, 1.0)
CONFIRMED_RGBA = (1.0, 0.0, 0.0, 1.0)
TILE_RGBA = (0.0, 0.5, 1.0, 0.8)
EVENT_SCHEMA = {"type": "object", "properties": {"event": {"type": "string"}}, "required": ["event"]}


class FoxgloveConfigError(ValueError):
    """The Foxglove server cannot start as configured."""


@dataclass(frozen=True)
class FoxgloveConfig:
    """``fps``: images published per second at most; ``backlog``: messages queued per client;
    ``max_width``: wider frames are scaled to this width (px) before encoding, and their
    annotations with them (0: full size; encoding 720p at full size costs ~2.7x the CPU)."""

    host: str = DEFAULT_HOST
    port: int = 8765
    fps: float = 10.0
    jpeg_quality: int = 80
    max_width: int = 640
    backlog: int = 64
    max_pending_events: int = 1000

    def __post_init__(self) -> None:
        if not is_loopback(self.host):
            raise FoxgloveConfigError(
                f"--foxglove {self.host}: the Foxglove WebSocket protocol has no authentication; "
                "bind loopback and use an SSH tunnel"
            )
        if not 0 < self.fps <= 60:
            raise FoxgloveConfigError(f"foxglove fps must be in (0, 60], got {self.fps}")
        problem = width_problem(self.max_width, "foxglove")
        if problem is not None:
            raise FoxgloveConfigError(problem)


class FoxgloveSink(Sink):
    """See the module docstring; ``tracks`` as for :class:`~stopsign.edge.sinks.view.ViewSink`."""

    name = "foxglove"

    def __init__(
        self, config: FoxgloveConfig, class_names: Sequence[str], tracks: TrackProvider | None = None
    ) -> None:
        self.config, self._names, self._tracks = config, list(class_names), tracks
        self._slot = LatestFrame()
        self._pending: deque[dict[str, Any]] = deque(maxlen=config.max_pending_events)
        self._tiles: tuple[tuple[int, int, int, int], ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._context: Any = None
        self._channels: dict[str, Any] = {}
        self.port: int | None = None
        self.published_frames = 0

    # --- the loop's side (never waits) ---------------------------------------------------------

    def on_frame(self, result: FrameResult) -> None:
        if self._slot.wanted.is_set():
            self._slot.put(result, snapshot_tracks(self._tracks))

    def on_event(self, event: dict[str, Any]) -> None:
        tiles = tiles_from_event(event)
        if tiles is not None:
            self._tiles = tiles
        self._pending.append(event)  # bounded: a burst loses its oldest, never waits

    # --- life cycle --------------------------------------------------------------------------

    def open(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        import foxglove
        from foxglove.channels import CompressedImageChannel, ImageAnnotationsChannel

        # Kept: when the context is collected, the SDK closes its channels.
        self._context = context = foxglove.Context()
        self._channels = {
            "image": CompressedImageChannel(IMAGE_TOPIC, context=context),
            "annotations": ImageAnnotationsChannel(ANNOTATIONS_TOPIC, context=context),
            "events": foxglove.Channel(EVENTS_TOPIC, schema=EVENT_SCHEMA, context=context),
            "health": foxglove.Channel(HEALTH_TOPIC, schema=EVENT_SCHEMA, context=context),
        }
        try:
            self._server = foxglove.start_server(
                name="stopsign-edge",
                host=self.config.host,
                port=self.config.port,
                context=context,
                message_backlog_size=self.config.backlog,
            )
        except Exception as exc:  # the SDK raises its own error type for a port in use
            raise OSError(f"--foxglove {self.config.host}:{self.config.port}: {exc}") from exc
        self.port = int(self._server.port)
        print(f"edge-detect foxglove: ws://{self.config.host}:{self.port}", flush=True, file=sys.stderr)
        self._stop.clear()
        self._thread = threading.Thread(target=self._publish_loop, name="foxglove-publisher", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._server is not None:
            self._drain_events()  # the last events (stopped) before the server goes
            self._server.stop()
            self._server = None
        for channel in self._channels.values():
            channel.close()
        self._channels, self._context = {}, None
        self._slot.clear()

    # --- the publisher thread ----------------------------------------------------------------

    def _publish_loop(self) -> None:
        period = 1.0 / self.config.fps
        taken, next_at = 0, time.monotonic()
        image, annotations = self._channels["image"], self._channels["annotations"]
        while not self._stop.is_set():
            next_at = max(next_at + period, time.monotonic())
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                break
            self._drain_events()
            if image.has_sinks() or annotations.has_sinks():
                self._slot.wanted.set()
            else:
                self._slot.wanted.clear()
                self._slot.clear()
                continue
            snapshot = self._slot.take(taken)
            if snapshot is None:
                continue
            taken = snapshot.sequence
            try:
                self._publish_frame(snapshot)
            except Exception as exc:  # one bad frame must not end the publisher
                log.warning("foxglove: frame %d not published: %s", snapshot.result.frame.index, exc)

    def _drain_events(self) -> None:
        while self._pending:
            event = self._pending.popleft()
            channel = self._channels["health" if event.get("event") == "heartbeat" else "events"]
            channel.log(json.dumps(event, separators=(",", ":"), default=str))

    def _publish_frame(self, snapshot: Snapshot) -> None:
        from foxglove.messages import CompressedImage, Timestamp

        image, scale = scaled_to_width(snapshot.result.frame.image, self.config.max_width)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise ValueError(f"cv2.imencode failed on a {image.shape} frame")
        now_ns = time.time_ns()
        stamp_ns = capture_wall_ns(snapshot.result.frame.monotonic_ns, now_ns)
        stamp = Timestamp(sec=stamp_ns // 1_000_000_000, nsec=stamp_ns % 1_000_000_000)
        self._channels["image"].log(
            CompressedImage(timestamp=stamp, frame_id=FRAME_ID, data=data.tobytes(), format="jpeg"),
            log_time=now_ns,
        )
        self._channels["annotations"].log(self._annotations(snapshot, stamp, scale), log_time=now_ns)
        self.published_frames += 1

    def _annotations(self, snapshot: Snapshot, stamp: Any, scale: float = 1.0) -> Any:
        """Detections, tracks and tiles of one frame as one ``foxglove.ImageAnnotations``, in the
        pixels of the published image (the frame's times ``scale``)."""
        from foxglove.messages import ImageAnnotations

        points, texts = [], []

        def scaled(box: Sequence[float]) -> tuple[float, ...]:
            return tuple(float(v) * scale for v in box)

        detections = snapshot.result.detections
        if detections is not None:
            for box, score, cls in zip(detections.xyxy, detections.score, detections.class_id):
                name = self._names[cls] if cls < len(self._names) else str(int(cls))
                x1, y1, x2, y2 = scaled(box)
                points.append(_box(stamp, (x1, y1, x2, y2), DETECTION_RGBA, 2.0))
                texts.append(_text(stamp, x1, y1 - 4, f"{name} {score:.2f}", DETECTION_RGBA))
        for track in snapshot.tracks:
            colour = CONFIRMED_RGBA if track.confirmed else TRACK_RGBA
            x1, y1, x2, y2 = scaled(track.box)
            points.append(_box(stamp, (x1, y1, x2, y2), colour, 4.0 if track.confirmed else 1.0))
            label = f"#{track.track_id}" + (" STOP" if track.confirmed else "")
            if track.distance_m is not None:
                label += f" {track.distance_m:.0f} m"
            texts.append(_text(stamp, x1, y2 + 16, label, colour))
        for x, y, w, h in self._tiles:
            points.append(_box(stamp, scaled((x, y, x + w, y + h)), TILE_RGBA, 1.0))
        return ImageAnnotations(points=points, texts=texts)


def capture_wall_ns(capture_monotonic_ns: int, now_wall_ns: int) -> int:
    """The frame's capture time on the wall clock (as a bag of this data is stamped), when its
    monotonic capture time is from this run (a camera: under a minute old); else ``now_wall_ns``
    (a recorded drive keeps the monotonic times of the machine that recorded it)."""
    age_ns = time.monotonic_ns() - capture_monotonic_ns
    return now_wall_ns - age_ns if 0 <= age_ns < 60_000_000_000 else now_wall_ns


def _colour(rgba: tuple[float, float, float, float]) -> Any:
    from foxglove.messages import Color

    return Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])


def _box(stamp: Any, box: Sequence[float], rgba: tuple[float, float, float, float], thickness: float) -> Any:
    """A closed outline through the four corners of ``box`` (xyxy, pixels)."""
    from foxglove.messages import Point2, PointsAnnotation, PointsAnnotationType

    x1, y1, x2, y2 = (float(v) for v in box)
    corners = [Point2(x=x1, y=y1), Point2(x=x2, y=y1), Point2(x=x2, y=y2), Point2(x=x1, y=y2)]
    return PointsAnnotation(
        timestamp=stamp,
        type=PointsAnnotationType.LineLoop,
        points=corners,
        outline_color=_colour(rgba),
        thickness=thickness,
    )


def _text(stamp: Any, x: float, y: float, text: str, rgba: tuple[float, float, float, float]) -> Any:
    from foxglove.messages import Point2, TextAnnotation

    return TextAnnotation(
        timestamp=stamp,
        position=Point2(x=float(x), y=float(max(y, 12.0))),
        text=text,
        font_size=14.0,
        text_color=_colour(rgba),
        background_color=_colour((0.0, 0.0, 0.0, 0.6)),
    )
