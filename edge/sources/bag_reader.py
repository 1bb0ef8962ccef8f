"""Reading a ROS bag with ``rosbags``: opening it, choosing the camera topic, and iterating its
images with every per-message check (see :mod:`stopsign.edge.sources.bag` for the source).

``rosbags`` is imported only inside these functions: ``import stopsign.edge`` never needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stopsign.edge.sources.base import SourceOpenError

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
