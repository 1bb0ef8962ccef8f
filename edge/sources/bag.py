"""A ROS bag as a frame source: rosbag2 (MCAP or sqlite3) or ROS 1, read with ``rosbags``.

``bag://PATH?topic=/camera/image_raw/compressed&info=/camera/camera_info&realtime=1``, or a plain
``.mcap`` / ``.bag`` path or rosbag2 folder. Frames come from one image topic
(``sensor_msgs/msg/CompressedImage``: jpeg, png; ``sensor_msgs/msg/Image``: the encodings of
:mod:`stopsign.edge.rosmsg.images`), decoded straight into the loop's BGR frame. A bag with one
image topic needs no ``topic``; with several, the error lists them.

Times: ``header.stamp`` is the frame's ``pts_ns`` (the vehicle's capture time), so the tracker,
the events and ``--bag-out`` see the vehicle's time; a message stamped 0 (a driver that never
stamps) takes the bag's log time instead. ``monotonic_ns`` is when the frame left the bag on this
computer's monotonic clock (what a camera frame's capture time is to the loop: the frame log and
``edge-bench`` time the run with it). ``edge-replay`` keys a bag's frames on the stamps alone. Delivery is ordered and as fast as the
consumer reads, like ``file://``; ``realtime=1`` plays the bag as a live camera: paced by the
stamps, and a frame the consumer is too late for is skipped (``dropped``), as ``edge-replay
--realtime`` does with a drive.

Bad input loses nothing else: a message whose image does not decode, has an unknown encoding or
a stamp that goes backwards is skipped with a ``frame_rejected`` status naming the topic and the
stamp; a bag that cannot be opened, or names no usable topic, is a :class:`SourceOpenError`; a
bag cut short mid-file (a truncated or corrupt chunk) delivers every frame before the damage,
then reports ``source_error`` naming the bag, and ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stopsign.edge.sources.bag_reader import (
    CAMERA_INFO,
    DEFAULT_OPTIONS,
    IMAGE_TYPES,
    BagImage,
    BagImages,
    BagOptions,
    bag_camera_meta,
    choose_topics,
    intrinsics_from_info,
    open_reader,
)
from stopsign.edge.sources.base import Source, SourceOpenError, StatusReport
from stopsign.edge.vision.frame import Frame

__all__ = [
    "CAMERA_INFO", "DEFAULT_OPTIONS", "IMAGE_TYPES", "BagImage", "BagImages", "BagOptions", "BagSource",
    "bag_camera_meta", "choose_topics", "intrinsics_from_info", "open_reader",
]  # fmt: skip


class BagSource(Source):
    """Frames of one image topic of a bag; see the module docstring.

    In order (the default) a thread of the source's own reads and decodes up to ``PREFETCH``
    frames ahead, as GStreamer's streaming thread does for ``file://``: OpenCV's decoders release
    the GIL, so decoding overlaps the model instead of adding to each frame. It waits while the
    queue is full: ordered delivery never drops.

    With ``realtime`` the bag plays as a live camera: frame i is "captured" at the first frame's
    read time plus its stamp offset (its ``monotonic_ns``, so capture age is measured from then),
    and a frame whose successor is already due when the consumer reads is skipped, never
    decoded, and counted in ``dropped``, as the newest-frame-only delivery of a camera would.
    """

    live = False
    PREFETCH = 4

    def __init__(self, path: str | Path, options: BagOptions, report: StatusReport) -> None:
        self.path, self.options, self._report = Path(path), options, report
        self.live = options.realtime
        self._dropped = 0
        self._exhausted = False
        self.description = f"bag {self.path}"
        self._images: BagImages | None = None
        self._iter: Iterator[BagImage] | None = None
        self._pending: BagImage | None = None
        self._eos = False
        self._index = 0
        self._first: tuple[int, int] | None = None  # (stamp ns, wall monotonic ns) of the first frame
        self._fps: float | None = None
        self.rejected = 0
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(self.PREFETCH)
        self._stop = threading.Event()
        self._producer: threading.Thread | None = None

    def open(self) -> None:
        self._images = BagImages(self.path, self.options)
        if self._images.count == 0:
            topic = self._images.topic
            self._images.close()
            self._images = None
            raise SourceOpenError(f"{self.path}: no messages on {topic} (an empty bag)")
        self._iter = self._images.messages()
        if not self.options.realtime:
            self._producer = threading.Thread(target=self._produce, name="bag-reader", daemon=True)
            self._producer.start()
        self.description = f"bag {self.path} {self._images.topic} ({self._images.msgtype.rsplit('/', 1)[-1]})"
        duration = self._images.reader.duration / 1e9
        count = self._images.count
        self._fps = (count - 1) / duration if count > 1 and duration > 0 else None

    @property
    def eos(self) -> bool:
        return self._eos

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def camera(self) -> dict[str, Any] | None:
        """The latest CameraInfo read, as meta.json fields (None before one)."""
        return self._images.camera if self._images is not None else None

    @property
    def dropped(self) -> int:
        """Frames skipped in realtime mode because a newer one was due (never decoded)."""
        return self._dropped

    def _reject(self, item: BagImage) -> None:
        assert self._images is not None
        self.rejected += 1
        self._report("frame_rejected", {"reason": item.error, "topic": self._images.topic,
                                        "stamp_ns": item.stamp_ns})  # fmt: skip

    def _next_message(self) -> BagImage | None:
        """The next message whose stamp is in order (undecoded), or None at the end."""
        assert self._iter is not None and self._images is not None
        if self._exhausted:
            return None
        for item in self._iter:
            if item.error is None:
                return item
            self._reject(item)
        self._exhausted = True
        if self._images.read_error is not None:
            self._report("source_error", {"source": str(self.path), "error": self._images.read_error})
        return None

    def _due_ns(self, item: BagImage) -> int:
        assert self._first is not None
        return self._first[1] + (item.stamp_ns - self._first[0])

    def _put(self, kind: str, item: Any) -> bool:
        """Queue for the consumer, waiting while it is full; False once the source is closing."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        """The reader thread (ordered mode): decode ahead; rejections and the end go through the
        queue too, so every report is made on the consumer's thread, in order."""
        assert self._iter is not None and self._images is not None
        topic = self._images.topic
        try:
            for item in self._iter:
                done = item if item.error is not None else item.decoded(topic)
                if not self._put("rejected" if done.error is not None else "frame", done):
                    return
            self._put("end", self._images.read_error)
        except Exception as exc:  # anything the reader did not foresee ends the stream, said aloud
            self._put("end", f"{self.path}: reading failed ({type(exc).__name__}: {exc})")

    def _read_ordered(self, timeout_s: float) -> Frame | None:
        while True:
            try:
                kind, item = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                return None
            if kind == "rejected":
                self._reject(item)
                continue
            if kind == "end":
                self._eos = True
                if item is not None:
                    self._report("source_error", {"source": str(self.path), "error": item})
                return None
            frame = Frame(self._index, item.stamp_ns, time.monotonic_ns(), item.image)
            self._index += 1
            return frame

    def read(self, timeout_s: float) -> Frame | None:
        if self._eos or self._iter is None:
            return None
        if self._producer is not None:
            return self._read_ordered(timeout_s)
        while True:
            item = self._pending or self._next_message()
            self._pending = None
            if item is None:
                self._eos = True
                return None
            captured = time.monotonic_ns()
            if self.options.realtime:
                if self._first is None:
                    self._first = (item.stamp_ns, captured)
                wait_s = (self._due_ns(item) - time.monotonic_ns()) / 1e9
                if wait_s > timeout_s:  # not yet "captured": come back later
                    time.sleep(timeout_s)
                    self._pending = item
                    return None
                if wait_s > 0:
                    time.sleep(wait_s)
                # Late: skip to the newest frame already due, as a camera keeping one frame would.
                while (newer := self._next_message()) is not None and self._due_ns(
                    newer
                ) <= time.monotonic_ns():
                    self._dropped += 1
                    item = newer
                self._pending = newer
                captured = self._due_ns(item)
            frame_item = item.decoded(self._images.topic if self._images is not None else "")
            if frame_item.error is not None:
                self._reject(frame_item)
                continue
            frame = Frame(self._index, item.stamp_ns, captured, frame_item.image)
            self._index += 1
            return frame

    def close(self) -> None:
        """Stop the reader thread and release the bag; idempotent."""
        self._stop.set()
        if self._producer is not None:
            self._producer.join(timeout=5.0)
            self._producer = None
        if self._images is not None:
            self._images.close()
            self._images, self._iter = None, None
