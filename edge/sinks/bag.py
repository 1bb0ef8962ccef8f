"""What the detector saw and said, as a ROS 2 bag (``edge-detect --bag-out OUT.mcap``).

Topics, all CDR with ``ros2msg`` schemas (``ros2 bag play`` publishes them, Foxglove opens them):

- ``/stopsign/detections``: ``vision_msgs/msg/Detection2DArray``, one per processed frame (an
  empty array when nothing was found; none for a rejected frame), stamped with the frame's time:
  a bag's header stamp, or for a camera the capture time on the wall clock (as ``ros2 bag
  record`` stamps), so the output lines up with the vehicle's own bag;
- ``/stopsign/annotations``: ``foxglove_msgs/msg/ImageAnnotations``, the same boxes as outlines and
  labels, with the image's stamp so Foxglove's Image panel draws them over the camera topic;
- ``/stopsign/events``: ``std_msgs/msg/String``, one JSON event per message (``stop_sign_ahead``,
  ``stop_sign_lost`` and the status lines, exactly as the JSON-lines channel). No standard ROS
  type carries a track id, a box, a distance and a reason, and a private message type would need
  its package installed wherever the bag is played;
- ``/stopsign/image/compressed``: ``sensor_msgs/msg/CompressedImage`` JPEG of the input frames,
  with ``--bag-frames every`` (all), ``events`` (frames that raised a tracker event) or ``none``.

The loop never waits for the bag: each hook copies what it needs into a bounded queue
(``put_nowait``) and a thread of the sink's own serialises, JPEG-encodes and writes. A full queue
(a disk that stalls) loses the item and counts it in ``dropped``. A path ending in ``.mcap`` is
written as one MCAP file (rosbags writes a rosbag2 folder; its ``.mcap`` is moved out at close);
any other path is a rosbag2 folder with ``metadata.yaml``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.sinks.base import FrameResult, Sink

log = logging.getLogger("stopsign.edge.sinks")

FRAME_MODES = ("every", "events", "none")
DETECTIONS_TOPIC = "/stopsign/detections"
ANNOTATIONS_TOPIC = "/stopsign/annotations"
EVENTS_TOPIC = "/stopsign/events"
IMAGE_TOPIC = "/stopsign/image/compressed"
TRACK_EVENTS = ("stop_sign_ahead", "stop_sign_lost")
# Stamps from 2001-09-09 on are epoch times (a bag's header stamps); smaller ones are stream times.
EPOCH_STAMP_MIN = 10**18


@dataclass(frozen=True)
class BagSinkConfig:
    """``path``: ``.mcap`` file or rosbag2 folder (must not exist); ``frames``: one of
    ``FRAME_MODES``; ``jpeg_quality`` 1..100; ``queue_size``: items held for the writer thread."""

    path: str
    frames: str = "none"
    jpeg_quality: int = 85
    queue_size: int = 256
    frame_id: str = "camera"

    def __post_init__(self) -> None:
        if self.frames not in FRAME_MODES:
            raise ValueError(f"--bag-frames must be one of {FRAME_MODES}, got {self.frames!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"bag JPEG quality must be in 1..100, got {self.jpeg_quality}")
        if self.queue_size < 1:
            raise ValueError(f"bag queue size must be >= 1, got {self.queue_size}")


@dataclass(frozen=True)
class _FrameItem:
    stamp_ns: int
    boxes: np.ndarray  # (n, 4) float32 xyxy, frame pixels
    scores: np.ndarray  # (n,)
    labels: list[str]
    image: np.ndarray | None  # a private copy, or None when frames are not written


@dataclass(frozen=True)
class _EventItem:
    event: dict[str, Any]
    stamp_ns: int | None  # None: a status line, placed at the latest frame's time


_STOP = object()


class BagSink(Sink):
    """See the module docstring. ``dropped``: items lost to a full queue; ``written``: messages."""

    name = "bag"

    def __init__(self, config: BagSinkConfig, class_names: Sequence[str]) -> None:
        self.config, self._names = config, list(class_names)
        self.final_path = Path(config.path)
        self._queue: queue.Queue[Any] = queue.Queue(config.queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._event_frames: set[int] = set()
        self.dropped = 0
        self.written = 0
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self._clock_pair: tuple[int, int] | None = None  # (pts, bag stamp) of the latest frame

    # --- the loop's side: cheap, never blocks --------------------------------------------------

    def open(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"{self.final_path}: the bag writer failed earlier ({self._error}); not reopened"
            )
        if self._thread is not None:
            return
        if self.final_path.exists():
            raise FileExistsError(f"{self.final_path}: exists already; a bag is never overwritten")
        from stopsign.edge.rosmsg.types import typestore

        typestore()  # fail here, not on the thread, when rosbags is missing
        self._thread = threading.Thread(target=self._run, name="bag-sink", daemon=True)
        self._thread.start()

    def _offer(self, item: Any) -> None:
        if self._error is not None:
            raise RuntimeError(f"{self.final_path}: bag writer stopped: {self._error}")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") in TRACK_EVENTS and isinstance(event.get("frame"), int):
            self._event_frames.add(event["frame"])
        self._offer(_EventItem(dict(event), self._event_stamp(event.get("timestamp_ns"))))

    def _frame_stamp(self, pts_ns: int, monotonic_ns: int) -> int:
        """The bag time of a frame: its own stamp when it is one (a bag's header stamps, on the
        epoch), else its capture time on this computer's wall clock (a camera's stream time starts
        near 0), so the output lines up with a ``ros2 bag record`` of the same vehicle."""
        if pts_ns >= EPOCH_STAMP_MIN:
            return pts_ns
        return monotonic_ns + self._wall_offset_ns

    def _event_stamp(self, timestamp_ns: Any) -> int | None:
        """A tracker event's frame time (in the loop's pts domain) on the bag's time line."""
        if not isinstance(timestamp_ns, int) or timestamp_ns < 0:
            return None
        if timestamp_ns >= EPOCH_STAMP_MIN or self._clock_pair is None:
            return timestamp_ns if timestamp_ns >= EPOCH_STAMP_MIN else None
        pts, stamp = self._clock_pair  # the previous frame: events come before their frame's result
        return stamp + (timestamp_ns - pts)

    def on_frame(self, result: FrameResult) -> None:
        if result.detections is None:  # rejected, or inference failed: nothing was said about it
            return
        frame, dets = result.frame, result.detections
        stamp = self._frame_stamp(frame.pts_ns, frame.monotonic_ns)
        self._clock_pair = (frame.pts_ns, stamp)
        keep_image = self.config.frames == "every" or (
            self.config.frames == "events" and frame.index in self._event_frames
        )
        self._event_frames.discard(frame.index)
        labels = [self._label(int(c)) for c in dets.class_id]
        # The frame buffer may be reused by the source once this hook returns: the thread gets a copy.
        image = np.array(frame.image, copy=True) if keep_image else None
        self._offer(_FrameItem(stamp, dets.xyxy.copy(), dets.score.copy(), labels, image))

    def _label(self, class_id: int) -> str:
        return self._names[class_id] if 0 <= class_id < len(self._names) else str(class_id)

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)  # at shutdown waiting is fine: everything queued gets written
        thread.join()
        if self.dropped:
            log.warning(
                "sink bag: %d items dropped (queue full: the disk was slower than the loop)", self.dropped
            )
        if self._error is not None:
            raise RuntimeError(f"{self.final_path}: bag writer failed: {self._error}")

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._write_all()
        except Exception as exc:  # reported by the next hook call or close, through GuardedSink
            log.warning("sink bag: writer failed: %s: %s", type(exc).__name__, exc)
            self._error = exc
            while True:  # unblock close(): drain until the stop marker
                if self._queue.get() is _STOP:
                    return

    def _write_all(self) -> None:
        from stopsign.edge.rosmsg import build
        from stopsign.edge.rosmsg.images import encode_compressed
        from stopsign.edge.rosmsg.types import (
            COMPRESSED_IMAGE,
            DETECTION_ARRAY,
            IMAGE_ANNOTATIONS,
            STRING,
            typestore,
        )
        from stopsign.edge.rosmsg.writer import bag_writer

        store = typestore()
        pending_events: list[dict[str, Any]] = []
        last_stamp: int | None = None
        with bag_writer(self.final_path) as writer:
            dets = writer.add_connection(DETECTIONS_TOPIC, DETECTION_ARRAY, typestore=store)
            notes = writer.add_connection(ANNOTATIONS_TOPIC, IMAGE_ANNOTATIONS, typestore=store)
            events = writer.add_connection(EVENTS_TOPIC, STRING, typestore=store)
            images = (
                writer.add_connection(IMAGE_TOPIC, COMPRESSED_IMAGE, typestore=store)
                if self.config.frames != "none"
                else None
            )

            def write(connection: Any, stamp: int, msg: Any) -> None:
                writer.write(connection, stamp, build.serialize(msg))
                self.written += 1

            while (item := self._queue.get()) is not _STOP:
                if isinstance(item, _EventItem):
                    if last_stamp is None:
                        pending_events.append(item.event)  # placed at the first frame's time
                    else:
                        stamp = item.stamp_ns if item.stamp_ns is not None else last_stamp
                        write(events, stamp, build.json_string(item.event))
                    continue
                last_stamp = item.stamp_ns
                for event in pending_events:
                    write(events, last_stamp, build.json_string(event))
                pending_events.clear()
                frame_id = self.config.frame_id
                write(dets, item.stamp_ns, build.detection_array(item.stamp_ns, item.boxes, item.scores,
                                                                 item.labels, frame_id))  # fmt: skip
                texts = [(box, f"{label} {score:.2f}", False)
                         for box, label, score in zip(item.boxes, item.labels, item.scores)]  # fmt: skip
                write(notes, item.stamp_ns, build.image_annotations(item.stamp_ns, texts))
                if images is not None and item.image is not None:
                    fmt, data = encode_compressed(item.image, "jpeg", self.config.jpeg_quality)
                    write(images, item.stamp_ns, build.compressed_image(item.stamp_ns, fmt, data, frame_id))
            for event in pending_events:  # a run that never got a frame still keeps its status lines
                write(events, 0, build.json_string(event))
