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

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stopsign.edge.sources.base import Source, SourceOpenError, StatusReport
from stopsign.edge.vision.frame import Frame

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"


@dataclass(frozen=True)
class BagOptions:
    """``topic``: the image topic (None: the only one); ``info``: the CameraInfo topic (None: the
    only one, if any); ``realtime``: pace frames by their stamps instead of as fast as read."""

    topic: str | None = None
    info: str | None = None
    realtime: bool = False

    @classmethod
    def from_query(cls, options: dict[str, str]) -> BagOptions:
        return cls(options.get("topic"), options.get("info"), options.get("realtime") in ("1", "true"))


DEFAULT_OPTIONS = BagOptions()


def open_reader(path: str | Path) -> Any:
    """An opened ``rosbags`` ``AnyReader`` on ``path``; any failure is a SourceOpenError naming it."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        raise SourceOpenError(
            f"{path}: reading ROS bags needs the 'ros' extra: pip install 'stopsign-edge[ros]'"
        ) from None
    from stopsign.edge.rosmsg.types import typestore

    path = Path(path)
    if not path.exists():
        raise SourceOpenError(f"{path}: no such bag file or folder")
    reader = AnyReader([path], default_typestore=typestore())
    try:
        reader.open()
    except Exception as exc:  # rosbags raises several types (ReaderError, struct/zstd errors) for a bad file
        hint = ""
        if "end magic" in str(exc):  # an MCAP whose writer never finished (killed, power lost)
            hint = "; the file is cut short: `mcap recover` (Foxglove's mcap CLI) rewrites what it holds"
        raise SourceOpenError(f"{path}: not a readable ROS bag ({type(exc).__name__}: {exc}){hint}") from None
    return reader


def topics_by_type(reader: Any) -> dict[str, str]:
    """``{topic: message type}`` of every connection in the bag."""
    return {c.topic: c.msgtype for c in reader.connections}


def choose_topics(reader: Any, path: Path, options: BagOptions) -> tuple[str, str | None]:
    """(image topic, CameraInfo topic or None) for ``options``; errors list what the bag has."""
    topics = topics_by_type(reader)
    images = sorted(t for t, kind in topics.items() if kind in IMAGE_TYPES)
    infos = sorted(t for t, kind in topics.items() if kind == CAMERA_INFO)
    listing = ", ".join(f"{t} ({k})" for t, k in sorted(topics.items())) or "none"
    if options.topic is not None:
        if options.topic not in topics:
            raise SourceOpenError(f"{path}: no topic {options.topic}; image topics: {images or 'none'}")
        if topics[options.topic] not in IMAGE_TYPES:
            raise SourceOpenError(
                f"{path}: topic {options.topic} is {topics[options.topic]}, not an image "
                f"(sensor_msgs/msg/Image or CompressedImage); image topics: {images or 'none'}"
            )
        image = options.topic
    elif len(images) == 1:
        image = images[0]
    elif not images:
        raise SourceOpenError(
            f"{path}: no image topic (sensor_msgs/msg/Image or CompressedImage); topics: {listing}"
        )
    else:
        raise SourceOpenError(
            f"{path}: several image topics {images}; choose one with bag://{path}?topic=..."
        )
    if options.info is not None:
        if topics.get(options.info) != CAMERA_INFO:
            raise SourceOpenError(
                f"{path}: no {CAMERA_INFO} topic {options.info}; CameraInfo topics: {infos or 'none'}"
            )
        return image, options.info
    if len(infos) == 1:
        return image, infos[0]
    # Several CameraInfo topics: take the one beside the image topic (image_transport's layout).
    prefix = image.rsplit("/", 2)[0] if image.endswith("/compressed") else image.rsplit("/", 1)[0]
    beside = [t for t in infos if t.rsplit("/", 1)[0] == prefix]
    return image, beside[0] if len(beside) == 1 else None


def intrinsics_from_info(msg: Any) -> dict[str, Any]:
    """A CameraInfo -> a drive's meta.json fields: ``width``, ``height``, ``intrinsics`` (px).
    ROS 2 names the 3x3 camera matrix ``k``, ROS 1 ``K``."""
    k = [float(v) for v in (msg.k if hasattr(msg, "k") else msg.K)]
    return {
        "width": int(msg.width),
        "height": int(msg.height),
        "intrinsics": {"fx": k[0], "fy": k[4], "cx": k[2], "cy": k[5]},
    }


def bag_camera_meta(path: str | Path, options: BagOptions = DEFAULT_OPTIONS) -> dict[str, Any] | None:
    """The first CameraInfo of the bag's camera as meta.json fields, or None without one (or when
    its focal length is 0: an uncalibrated camera)."""
    reader = open_reader(path)
    try:
        _, info = choose_topics(reader, Path(path), options)
        if info is None:
            return None
        connections = [c for c in reader.connections if c.topic == info]
        for connection, _, raw in reader.messages(connections=connections):
            meta = intrinsics_from_info(reader.deserialize(raw, connection.msgtype))
            return meta if meta["intrinsics"]["fx"] > 0 else None
    finally:
        reader.close()
    return None


@dataclass(frozen=True)
class BagImage:
    """One image message: ``image`` (H, W, 3) BGR once decoded, or ``error`` (topic and stamp
    named) when it cannot be used; ``msg`` is the deserialized message until it is decoded."""

    stamp_ns: int
    log_ns: int
    image: Any
    error: str | None = None
    msg: Any = None
    msgtype: str = ""

    def decoded(self, topic: str) -> BagImage:
        """This image decoded to BGR, or rejected with the reason (unknown encoding, bad data)."""
        if self.image is not None or self.error is not None:
            return self
        from stopsign.edge.rosmsg.images import ImageDecodeError, decode_image

        try:
            image = decode_image(self.msgtype, self.msg)
        except ImageDecodeError as exc:
            return BagImage(self.stamp_ns, self.log_ns, None, f"{topic} at stamp {self.stamp_ns}: {exc}")
        return BagImage(self.stamp_ns, self.log_ns, image)


class BagImages:
    """Iterates the image messages of one topic in log order, decoding each one (``messages()``:
    without decoding, for a reader that may skip some).

    Checks what a bag can hold wrong per message (undecodable data, unknown encoding, stamps going
    backwards) and yields those with ``error`` set, naming the topic and the stamp. ``camera``
    holds the latest CameraInfo as meta.json fields once one was read.
    """

    def __init__(self, path: str | Path, options: BagOptions = DEFAULT_OPTIONS) -> None:
        self.path = Path(path)
        self.options = options
        self.reader = open_reader(self.path)
        try:
            self.topic, self.info_topic = choose_topics(self.reader, self.path, options)
        except SourceOpenError:
            self.reader.close()
            raise
        self.msgtype = topics_by_type(self.reader)[self.topic]
        self.camera: dict[str, Any] | None = None
        self.read_error: str | None = None  # set when the bag ended in damage
        self._last_stamp: int | None = None

    @property
    def count(self) -> int:
        """Image messages the bag's index announces on the topic."""
        return sum(c.msgcount for c in self.reader.connections if c.topic == self.topic)

    def __iter__(self) -> Iterator[BagImage]:
        for item in self.messages():
            yield item.decoded(self.topic)

    def messages(self) -> Iterator[BagImage]:
        """The topic's messages deserialized and their stamps checked, not yet decoded."""
        from stopsign.edge.rosmsg.types import stamp_ns

        wanted = [c for c in self.reader.connections if c.topic in (self.topic, self.info_topic)]
        messages = self.reader.messages(connections=wanted)
        while True:
            try:
                connection, log_ns, raw = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # a damaged chunk or record: keep what came before, say where
                self.read_error = (
                    f"{self.path}: bag damaged after stamp {self._last_stamp} on {self.topic} "
                    f"({type(exc).__name__}: {exc}); the frames before it were read"
                )
                return
            if connection.topic == self.info_topic and connection.topic != self.topic:
                try:
                    self.camera = intrinsics_from_info(self.reader.deserialize(raw, connection.msgtype))
                except Exception as exc:  # a bad CameraInfo costs only the intrinsics update
                    log.warning("%s: CameraInfo on %s at %d does not deserialize: %s", self.path,
                                connection.topic, log_ns, exc)  # fmt: skip
                continue
            try:
                msg = self.reader.deserialize(raw, connection.msgtype)
            except Exception as exc:  # corrupt message bytes: reject this one message
                yield BagImage(log_ns, log_ns, None, f"{self.topic} at log time {log_ns}: message does not "
                               f"deserialize as {connection.msgtype} ({type(exc).__name__})")  # fmt: skip
                continue
            stamp = stamp_ns(msg.header.stamp) or log_ns
            if self._last_stamp is not None and stamp <= self._last_stamp:
                yield BagImage(stamp, log_ns, None, f"{self.topic} at stamp {stamp}: stamp not after the previous "
                               f"frame's {self._last_stamp} (out of order or repeated)")  # fmt: skip
                continue
            self._last_stamp = stamp
            yield BagImage(stamp, log_ns, None, None, msg, connection.msgtype)

    def close(self) -> None:
        """Idempotent."""
        if self.reader is not None:
            reader, self.reader = self.reader, None
            reader.close()


class BagSource(Source):
    """Frames of one image topic of a bag; see the module docstring.

    With ``realtime`` the bag plays as a live camera: frame i is "captured" at the first frame's
    read time plus its stamp offset (its ``monotonic_ns``, so capture age is measured from then),
    and a frame whose successor is already due when the consumer reads is skipped, never
    decoded, and counted in ``dropped``, as the newest-frame-only delivery of a camera would.
    """

    live = False

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

    def open(self) -> None:
        self._images = BagImages(self.path, self.options)
        if self._images.count == 0:
            topic = self._images.topic
            self._images.close()
            self._images = None
            raise SourceOpenError(f"{self.path}: no messages on {topic} (an empty bag)")
        self._iter = iter(self._images)
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

    def read(self, timeout_s: float) -> Frame | None:
        if self._eos or self._iter is None:
            return None
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
        if self._images is not None:
            self._images.close()
            self._images, self._iter = None, None
