"""``edge-record --format mcap``: record a camera (any source URI) as a rosbag2 MCAP.

``/camera/image_raw/compressed`` (``sensor_msgs/CompressedImage``, JPEG at ``jpeg_quality``) and,
when the focal length is known, ``/camera/camera_info`` (``sensor_msgs/CameraInfo``, principal
point at the image centre), one per frame. Stamps are the capture time on the wall clock (what
``ros2 bag record`` on the vehicle would have stamped): the frame's monotonic capture time moved
onto ``time.time_ns()``'s epoch once, at the start, so they never step with NTP.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import open_source
from stopsign.edge.sources.launch import CameraOptions

IMAGE_TOPIC = "/camera/image_raw/compressed"
INFO_TOPIC = "/camera/camera_info"


@dataclass(frozen=True)
class BagRecordSummary:
    path: Path
    frames: int
    error: str | None


def record_bag(
    camera: str,
    out: str | Path,
    duration_s: float | None = None,
    camera_options: CameraOptions | None = None,
    focal_px: float | None = None,
    stop: threading.Event | None = None,
    jpeg_quality: int = 90,
) -> BagRecordSummary:
    """Record ``camera`` into the bag ``out`` (``.mcap`` file or rosbag2 folder; must not exist)
    until its end, ``duration_s`` or ``stop``. A source failure ends the recording with ``error``
    set; what was written stays a valid bag."""
    from stopsign.edge.rosmsg import build
    from stopsign.edge.rosmsg.images import encode_compressed
    from stopsign.edge.rosmsg.types import CAMERA_INFO, COMPRESSED_IMAGE, typestore
    from stopsign.edge.rosmsg.writer import bag_writer

    stop = stop or threading.Event()
    errors: list[str] = []

    def report(kind: str, fields: dict[str, object]) -> None:
        if kind in ("source_error", "source_stalled"):
            errors.append(f"{kind}: {fields}")

    source = open_source(camera, SourceOptions(camera_options or CameraOptions()), report)
    wall_offset = time.time_ns() - time.monotonic_ns()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    frames = 0
    store = typestore()
    try:
        with bag_writer(out) as writer:
            images = writer.add_connection(IMAGE_TOPIC, COMPRESSED_IMAGE, typestore=store)
            info = writer.add_connection(INFO_TOPIC, CAMERA_INFO, typestore=store) if focal_px else None
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                frame = source.read(0.5)
                if frame is None:
                    if source.eos:
                        break
                    continue
                stamp = frame.monotonic_ns + wall_offset
                fmt, data = encode_compressed(frame.image, "jpeg", jpeg_quality)
                writer.write(images, stamp, build.serialize(build.compressed_image(stamp, fmt, data)))
                if info is not None and focal_px is not None:
                    height, width = frame.size
                    msg = build.camera_info(stamp, width, height, focal_px, focal_px, width / 2, height / 2)
                    writer.write(info, stamp, build.serialize(msg))
                frames += 1
    finally:
        source.close()
    return BagRecordSummary(Path(out), frames, "; ".join(errors[:3]) or None)
