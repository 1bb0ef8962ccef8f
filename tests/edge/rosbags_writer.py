"""Bags for the tests, written by ``rosbags``' own writers and typestores (never the project's
code), so the project's reader is checked against the library's idea of a bag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

rosbags = pytest.importorskip("rosbags", reason="the 'ros' extra (rosbags) is not installed")

from rosbags.highlevel import AnyReader  # noqa: E402, F401 - for the tests, behind the skip above
from rosbags.rosbag1 import Writer as Ros1Writer  # noqa: E402
from rosbags.rosbag2 import StoragePlugin  # noqa: E402
from rosbags.rosbag2 import Writer as Ros2Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

ROS2 = get_typestore(Stores.ROS2_HUMBLE)
ROS1 = get_typestore(Stores.ROS1_NOETIC)
T0_NS = 1_700_000_000_123_456_789  # a vehicle clock: wall time in ns
STEP_NS = 66_666_667  # 15 fps


def make_frames(n: int, width: int = 96, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    """``n`` distinct textured BGR frames (never uniform, never identical: sanity keeps them)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8), (width, height))
    return [np.roll(base, 3 * i, axis=1).copy() for i in range(n)]


@dataclass(frozen=True)
class ImageTopic:
    """What to write on one topic: ``kind`` is ``jpeg``/``png`` (CompressedImage) or a raw encoding."""

    topic: str
    kind: str


def _raw_bytes(image: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """(data, step) of ``image`` (BGR) in a raw ``encoding``, converted the way a camera driver would."""
    h, w = image.shape[:2]
    if encoding == "bgr8":
        return image.reshape(-1), w * 3
    if encoding == "rgb8":
        return image[..., ::-1].copy().reshape(-1), w * 3
    if encoding == "mono8":
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).reshape(-1), w
    if encoding in ("yuyv", "yuv422_yuy2", "yuv422"):
        # BT.601 video range, as cameras send it (and OpenCV's YUV2BGR_YUYV/UYVY expects).
        b, g, r = (image[..., i].astype(np.float64) for i in range(3))
        y, u, v = (np.clip(c, 0, 255).round().astype(np.uint8) for c in (
            16 + 0.257 * r + 0.504 * g + 0.098 * b,
            128 - 0.148 * r - 0.291 * g + 0.439 * b,
            128 + 0.439 * r - 0.368 * g - 0.071 * b,
        ))  # fmt: skip
        packed = np.empty((h, w * 2), np.uint8)
        if encoding == "yuv422":  # ROS's yuv422 is UYVY: U Y0 V Y1
            packed[:, 0::4], packed[:, 1::4] = u[:, 0::2], y[:, 0::2]
            packed[:, 2::4], packed[:, 3::4] = v[:, 0::2], y[:, 1::2]
        else:  # YUYV: Y0 U Y1 V
            packed[:, 0::4], packed[:, 1::4] = y[:, 0::2], u[:, 0::2]
            packed[:, 2::4], packed[:, 3::4] = y[:, 1::2], v[:, 0::2]
        return packed.reshape(-1), w * 2
    if encoding == "bayer_rggb8":
        mosaic = np.empty((h, w), np.uint8)
        mosaic[0::2, 0::2] = image[0::2, 0::2, 2]
        mosaic[0::2, 1::2] = image[0::2, 1::2, 1]
        mosaic[1::2, 0::2] = image[1::2, 0::2, 1]
        mosaic[1::2, 1::2] = image[1::2, 1::2, 0]
        return mosaic.reshape(-1), w
    return image.reshape(-1), w * 3  # unknown encodings: any bytes, the reader must refuse the name


def image_message(store, image: np.ndarray, kind: str, stamp_ns: int, ros1: bool = False):
    """A CompressedImage (jpeg/png) or Image (raw ``kind``) of ``image`` stamped ``stamp_ns``."""
    t = store.types
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    time_type = t["builtin_interfaces/msg/Time"]
    if ros1:
        header = t["std_msgs/msg/Header"](seq=0, stamp=time_type(sec=sec, nanosec=nsec), frame_id="cam")
    else:
        header = t["std_msgs/msg/Header"](stamp=time_type(sec=sec, nanosec=nsec), frame_id="cam")
    if kind in ("jpeg", "png"):
        ok, data = cv2.imencode(".jpg" if kind == "jpeg" else ".png", image)
        assert ok
        return t["sensor_msgs/msg/CompressedImage"](header=header, format=kind, data=data.reshape(-1))
    data, step = _raw_bytes(image, kind)
    return t["sensor_msgs/msg/Image"](
        header=header, height=image.shape[0], width=image.shape[1], encoding=kind, is_bigendian=0, step=step,
        data=np.ascontiguousarray(data),
    )  # fmt: skip


def camera_info_message(store, stamp_ns: int, width: int, height: int, fx: float, cx: float, cy: float,
                        ros1: bool = False):  # fmt: skip
    t = store.types
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    stamp = t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)
    header = (
        t["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id="cam")
        if ros1
        else t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
    )
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    k = np.array([fx, 0, cx, 0, fx, cy, 0, 0, 1], np.float64)
    p = np.array([fx, 0, cx, 0, 0, fx, cy, 0, 0, 0, 1, 0], np.float64)
    fields = dict(header=header, height=height, width=width, distortion_model="plumb_bob",
                  d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)  # fmt: skip
    if ros1:
        fields["D"], fields["K"], fields["R"], fields["P"] = (
            fields.pop("d"),
            fields.pop("k"),
            fields.pop("r"),
            fields.pop("p"),
        )
    return t["sensor_msgs/msg/CameraInfo"](**fields)


def write_bag(
    path: Path,
    frames: Sequence[np.ndarray],
    topics: Sequence[ImageTopic],
    fmt: str = "mcap",
    stamps: Sequence[int] | None = None,
    camera_info: str | None = "/camera/camera_info",
    focal: float = 500.0,
    log_offset_ns: int = 5_000_000,
) -> Path:
    """Write ``frames`` on every topic of ``topics`` (and one CameraInfo per frame) as a bag:
    ``fmt`` ``mcap`` or ``sqlite3`` (rosbag2 folder at ``path``) or ``ros1`` (``path`` a .bag file).
    Log times are the receive order, ``log_offset_ns`` after the regular stamps."""
    stamps = list(stamps) if stamps is not None else [T0_NS + i * STEP_NS for i in range(len(frames))]
    ros1 = fmt == "ros1"
    store = ROS1 if ros1 else ROS2
    if ros1:
        writer = Ros1Writer(path)
    else:
        plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
        writer = Ros2Writer(path, version=9, storage_plugin=plugin)
    h, w = frames[0].shape[:2] if frames else (0, 0)
    with writer:
        conns = {}
        for t in topics:
            msgtype = (
                "sensor_msgs/msg/CompressedImage" if t.kind in ("jpeg", "png") else "sensor_msgs/msg/Image"
            )
            conns[t.topic] = writer.add_connection(t.topic, msgtype, typestore=store)
        info = (
            writer.add_connection(camera_info, "sensor_msgs/msg/CameraInfo", typestore=store)
            if camera_info
            else None
        )
        serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
        for i, (image, stamp) in enumerate(zip(frames, stamps)):
            # Received in order, whatever the stamps say (a driver's clock can step back).
            log_ns = T0_NS + i * STEP_NS + log_offset_ns
            if info is not None:
                msg = camera_info_message(store, stamp, w, h, focal, w / 2, h / 2, ros1)
                writer.write(info, log_ns, serialize(msg, "sensor_msgs/msg/CameraInfo"))
            for t in topics:
                msg = image_message(store, image, t.kind, stamp, ros1)
                writer.write(conns[t.topic], log_ns, serialize(msg, msg.__msgtype__))
    return path
