"""The messages the project writes, from its own types (boxes in frame pixels, times in ns)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from stopsign.edge.rosmsg.types import header, time_msg, typestore

# Foxglove annotation colours (RGBA in 0..1): detections amber, confirmed tracks red.
DETECTION_RGBA = (1.0, 0.75, 0.0, 1.0)
TRACK_RGBA = (0.9, 0.1, 0.1, 1.0)


def _types() -> dict[str, Any]:
    return typestore().types


def detection_array(
    stamp_ns: int,
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    frame_id: str = "camera",
    ids: Sequence[str] | None = None,
) -> Any:
    """``vision_msgs/msg/Detection2DArray``: one ``Detection2D`` per (n, 4) xyxy box in pixels,
    ``class_id`` = the class name, ``score`` in [0, 1]; ``ids`` (e.g. track ids) fill ``Detection2D.id``."""
    t = _types()
    head = header(stamp_ns, frame_id)
    detections = []
    for i, (box, score) in enumerate(zip(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4), scores)):
        x1, y1, x2, y2 = (float(v) for v in box)
        hypothesis = t["vision_msgs/msg/ObjectHypothesis"](class_id=str(labels[i]), score=float(score))
        pose = t["geometry_msgs/msg/PoseWithCovariance"](
            pose=t["geometry_msgs/msg/Pose"](
                position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            covariance=np.zeros(36, np.float64),
        )
        centre = t["vision_msgs/msg/Pose2D"](
            position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2), theta=0.0
        )
        detections.append(
            t["vision_msgs/msg/Detection2D"](
                header=head,
                results=[t["vision_msgs/msg/ObjectHypothesisWithPose"](hypothesis=hypothesis, pose=pose)],
                bbox=t["vision_msgs/msg/BoundingBox2D"](center=centre, size_x=x2 - x1, size_y=y2 - y1),
                id=str(ids[i]) if ids is not None else "",
            )
        )
    return t["vision_msgs/msg/Detection2DArray"](header=head, detections=detections)


def boxes_of(array: Any) -> np.ndarray:
    """A ``Detection2DArray`` -> (n, 4) float32 xyxy boxes in pixels."""
    rows = []
    for det in array.detections:
        cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
        w, h = det.bbox.size_x, det.bbox.size_y
        rows.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return np.asarray(rows, np.float32).reshape(-1, 4)


def _color(rgba: tuple[float, float, float, float]) -> Any:
    r, g, b, a = rgba
    return _types()["foxglove_msgs/msg/Color"](r=r, g=g, b=b, a=a)


def image_annotations(
    stamp_ns: int,
    boxes: Sequence[tuple[Sequence[float], str, bool]],
) -> Any:
    """``foxglove_msgs/msg/ImageAnnotations``: per (xyxy box, label text, is_track) a closed
    rectangle and a text label above it, stamped like the image so Foxglove draws them on it."""
    t = _types()
    stamp = time_msg(stamp_ns)
    points, labels = [], []
    transparent = _color((0.0, 0.0, 0.0, 0.0))
    for box, text, is_track in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        rgba = TRACK_RGBA if is_track else DETECTION_RGBA
        corners = [
            t["foxglove_msgs/msg/Point2"](x=x, y=y) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
        ]
        points.append(
            t["foxglove_msgs/msg/PointsAnnotation"](
                timestamp=stamp,
                type=2,  # LINE_LOOP: a closed rectangle
                points=corners,
                outline_color=_color(rgba),
                outline_colors=[],
                fill_color=transparent,
                thickness=3.0 if is_track else 2.0,
            )
        )
        labels.append(
            t["foxglove_msgs/msg/TextAnnotation"](
                timestamp=stamp,
                position=t["foxglove_msgs/msg/Point2"](x=x1, y=max(y1 - 4.0, 0.0)),
                text=text,
                font_size=14.0,
                text_color=_color((1.0, 1.0, 1.0, 1.0)),
                background_color=_color(rgba),
            )
        )
    return t["foxglove_msgs/msg/ImageAnnotations"](circles=[], points=points, labels=labels)


def compressed_image(stamp_ns: int, fmt: str, data: bytes, frame_id: str = "camera") -> Any:
    """``sensor_msgs/msg/CompressedImage`` (``fmt``: jpeg or png)."""
    return _types()["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, np.uint8)
    )


def camera_info(
    stamp_ns: int,
    width: int,
    height: int,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    frame_id: str = "camera",
) -> Any:
    """``sensor_msgs/msg/CameraInfo`` of a pinhole camera without distortion."""
    t = _types()
    k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], np.float64)
    p = np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], np.float64)
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return t["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(5, np.float64), k=k,
        r=np.array([1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], np.float64), p=p, binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip


def json_string(record: dict[str, Any]) -> Any:
    """``std_msgs/msg/String`` holding one JSON object (events, drive metadata)."""
    return _types()["std_msgs/msg/String"](data=json.dumps(record, separators=(",", ":")))


def serialize(msg: Any) -> bytes:
    """CDR bytes of ``msg`` (its ``__msgtype__``)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))
