"""The typestore every bag reader and writer of the project uses, and ROS time conversions.

``rosbags`` bundles the ROS 2 core messages (``sensor_msgs``, ``std_msgs``, ...) but neither
``vision_msgs`` nor ``foxglove_msgs``; those are parsed from the ``.msg`` files in ``msg/``
(``msg/<package>/<Name>.msg``, upstream's definitions) and registered, so a written bag carries
the exact ``ros2msg`` schema text that Foxglove and ``ros2 bag play`` read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

MSG_DIR = Path(__file__).resolve().parent / "msg"
# ROS 2 Humble: the oldest ROS 2 still supported; its sensor_msgs/std_msgs equal Jazzy's.
BASE_STORE = Stores.ROS2_HUMBLE

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
STRING = "std_msgs/msg/String"
DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"
IMAGE_ANNOTATIONS = "foxglove_msgs/msg/ImageAnnotations"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


def shipped_definitions() -> dict[str, str]:
    """``{"vision_msgs/msg/Detection2D": <.msg text>, ...}`` for every file under ``msg/``."""
    return {
        f"{path.parent.name}/msg/{path.stem}": path.read_text(encoding="utf-8")
        for path in sorted(MSG_DIR.glob("*/*.msg"))
    }


@cache
def typestore() -> Typestore:
    """ROS 2 Humble's types plus the shipped ``vision_msgs`` and ``foxglove_msgs`` (built once)."""
    store = get_typestore(BASE_STORE)
    types: dict[str, Any] = {}
    for name, text in shipped_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def stamp_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` (``sec``, ``nanosec``; ROS 1: ``sec``, ``nanosec`` too) in ns."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def time_msg(ns: int) -> Any:
    """ns -> ``builtin_interfaces/msg/Time``."""
    cls = typestore().types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return cls(sec=sec, nanosec=nanosec)


def header(ns: int, frame_id: str = "camera") -> Any:
    """A ``std_msgs/msg/Header`` stamped ``ns``."""
    return typestore().types["std_msgs/msg/Header"](stamp=time_msg(ns), frame_id=frame_id)
