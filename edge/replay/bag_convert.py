"""ROS bags as recorded drives: read one for replay, and convert drive folders and bags both ways.

A bag is the interchange form of a drive (DESIGN.md), keyed by message stamp:

=========================================  =============================================================
drive folder                               rosbag2 MCAP
=========================================  =============================================================
``video.*`` frame i                        ``/camera/image_raw/compressed`` (``sensor_msgs/CompressedImage``,
                                           PNG by default: lossless, so a converted drive replays to the
                                           same outputs; JPEG on request)
``frames.jsonl`` ``monotonic_ns`` of i     ``header.stamp`` (and log time) of image i
``meta.json`` intrinsics, size             ``/camera/camera_info`` (``sensor_msgs/CameraInfo``), one per frame
``meta.json`` (all of it)                  ``/stopsign/drive_meta`` (``std_msgs/String``, JSON), once
``labels.jsonl`` line of frame i           ``/stopsign/labels`` (``vision_msgs/Detection2DArray``) stamped
                                           like image i
``expected/*.jsonl``                       ``BAG/expected/`` (rosbag2 folder) or ``BAG.expected/`` (.mcap)
=========================================  =============================================================

Back from a bag, ``pts_ns`` is the stamp minus the first stamp (a bag keeps one time per message)
and the video is lossless FFV1 in ``video.mkv``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stopsign.edge.replay.drive import DriveError, DriveLabels, open_drive, read_frames, read_labels
from stopsign.edge.replay.expected import expected_dir
from stopsign.edge.sources.bag import DEFAULT_OPTIONS, BagImages, BagOptions, open_reader
from stopsign.edge.sources.base import SourceOpenError
from stopsign.edge.sources.drive import RecordedDrive

IMAGE_TOPIC = "/camera/image_raw/compressed"
INFO_TOPIC = "/camera/camera_info"
LABELS_TOPIC = "/stopsign/labels"
META_TOPIC = "/stopsign/drive_meta"
CONVERTER_VERSION = "stopsign.edge.replay.bag_convert/1"


@dataclass
class BagDrive:
    """A bag read whole for replay: ``drive.timestamps[i]`` = (pts_ns, stamp ns) of ``images[i]``;
    ``rejected``: the reasons for messages left out (topic and stamp in each)."""

    drive: RecordedDrive
    images: list[np.ndarray]
    topic: str
    rejected: list[str] = field(default_factory=list)


def read_bag_drive(path: str | Path, options: BagOptions = DEFAULT_OPTIONS) -> BagDrive:
    """Every good image of the bag's camera topic, in order, with its stamp; meta.json fields from
    ``/stopsign/drive_meta`` and the CameraInfo. Errors are :class:`DriveError` naming the bag."""
    path = Path(path)
    try:
        reader = BagImages(path, options)
    except SourceOpenError as exc:
        raise DriveError(str(exc)) from None
    images: list[np.ndarray] = []
    timestamps: list[tuple[int, int]] = []
    rejected: list[str] = []
    try:
        for item in reader:
            if item.error is not None:
                rejected.append(item.error)
                continue
            first = timestamps[0][1] if timestamps else item.stamp_ns
            timestamps.append((item.stamp_ns - first, item.stamp_ns))
            images.append(item.image)
        if reader.read_error is not None:
            raise DriveError(reader.read_error)
        camera = reader.camera
        topic = reader.topic
    finally:
        reader.close()
    if not images:
        raise DriveError(f"{path}: no decodable image on {topic}" + (f" ({rejected[0]})" if rejected else ""))
    meta = _stored_meta(path)
    if camera is not None:
        meta.update(camera)
    meta.setdefault("width", images[0].shape[1])
    meta.setdefault("height", images[0].shape[0])
    span = (timestamps[-1][1] - timestamps[0][1]) / 1e9
    meta.setdefault("fps", round((len(images) - 1) / span, 3) if span > 0 else None)
    return BagDrive(RecordedDrive(path, path, timestamps, meta), images, topic, rejected)


def _stored_meta(path: Path) -> dict[str, Any]:
    """The drive's meta.json kept in ``/stopsign/drive_meta``, or ``{}``."""
    reader = open_reader(path)
    try:
        connections = [c for c in reader.connections if c.topic == META_TOPIC]
        if not connections:  # (rosbags reads every topic when given none)
            return {}
        for connection, _, raw in reader.messages(connections=connections):
            try:
                return dict(json.loads(reader.deserialize(raw, connection.msgtype).data))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise DriveError(f"{path}: {META_TOPIC} is not a JSON object ({exc})") from None
    finally:
        reader.close()
    return {}


def bag_labels(path: str | Path, stamps: list[int]) -> DriveLabels | None:
    """Labels from ``/stopsign/labels``, matched to frames by stamp (``stamps[i]`` of frame i);
    None when the bag has no such topic. A label whose stamp is no frame's is an error naming it."""
    from stopsign.edge.rosmsg.build import boxes_of

    path = Path(path)
    reader = open_reader(path)
    index = {stamp: i for i, stamp in enumerate(stamps)}
    boxes = [np.zeros((0, 4), np.float32) for _ in stamps]
    try:
        connections = [c for c in reader.connections if c.topic == LABELS_TOPIC]
        if not connections:
            return None
        from stopsign.edge.rosmsg.types import stamp_ns

        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            stamp = stamp_ns(msg.header.stamp)
            if stamp not in index:
                raise DriveError(
                    f"{path}: {LABELS_TOPIC} at stamp {stamp} matches no frame of the camera topic"
                )
            boxes[index[stamp]] = boxes_of(msg)
    finally:
        reader.close()
    return DriveLabels(boxes)


def drive_labels(drive: Path, stamps: list[int]) -> DriveLabels | None:
    """Ground truth of a drive folder (``labels.jsonl``) or a bag (``/stopsign/labels``)."""
    from stopsign.edge.sources.uri import is_bag_path

    if is_bag_path(Path(drive)):
        return bag_labels(drive, stamps)
    return read_labels(drive, len(stamps))


@dataclass(frozen=True)
class ConvertSummary:
    source: Path
    out: Path
    frames: int
    labels: int
    expected: int  # expected-output files carried over


def drive_to_bag(
    folder: str | Path, out: str | Path, image_format: str = "png", jpeg_quality: int = 90
) -> ConvertSummary:
    """Write drive ``folder`` as a rosbag2 MCAP at ``out`` (``.mcap`` file or folder); see the module."""
    from stopsign.edge.rosmsg import build
    from stopsign.edge.rosmsg.images import encode_compressed
    from stopsign.edge.rosmsg.types import CAMERA_INFO, COMPRESSED_IMAGE, DETECTION_ARRAY, STRING, typestore
    from stopsign.edge.rosmsg.writer import bag_writer

    folder, out = Path(folder), Path(out)
    drive = open_drive(folder)
    images = read_frames(drive)
    labels = read_labels(folder, len(images))
    class_ids = _label_class_ids(folder) if labels is not None else {}
    intrinsics = drive.meta.get("intrinsics") or {}
    height, width = images[0].shape[:2] if images else (0, 0)
    store = typestore()
    with bag_writer(out) as writer:
        image_conn = writer.add_connection(IMAGE_TOPIC, COMPRESSED_IMAGE, typestore=store)
        info_conn = (
            writer.add_connection(INFO_TOPIC, CAMERA_INFO, typestore=store) if intrinsics.get("fx") else None
        )
        label_conn = writer.add_connection(LABELS_TOPIC, DETECTION_ARRAY, typestore=store) if labels else None
        meta_conn = writer.add_connection(META_TOPIC, STRING, typestore=store)
        first = drive.timestamps[0][1] if drive.timestamps else 0
        writer.write(meta_conn, first, build.serialize(build.json_string(drive.meta)))
        for i, image in enumerate(images):
            stamp = drive.timestamps[i][1]
            if info_conn is not None:
                fx = float(intrinsics["fx"])
                fy = float(intrinsics.get("fy") or fx)
                cx, cy = float(intrinsics.get("cx", width / 2)), float(intrinsics.get("cy", height / 2))
                info = build.camera_info(stamp, width, height, fx, fy, cx, cy)
                writer.write(info_conn, stamp, build.serialize(info))
            fmt, data = encode_compressed(image, image_format, jpeg_quality)
            writer.write(image_conn, stamp, build.serialize(build.compressed_image(stamp, fmt, data)))
            if label_conn is not None and labels is not None:
                boxes = labels.boxes[i]
                ids = class_ids.get(i) or [0] * len(boxes)
                array = build.detection_array(stamp, boxes, np.ones(len(boxes)), [str(c) for c in ids])
                writer.write(label_conn, stamp, build.serialize(array))
    copied = _copy_expected(folder / "expected", expected_dir(out))
    labelled = sum(len(b) > 0 for b in labels.boxes) if labels else 0
    return ConvertSummary(folder, out, len(images), labelled, copied)


def _label_class_ids(folder: Path) -> dict[int, list[int]]:
    """``labels.jsonl``'s optional ``class_ids`` per frame index (read_labels has checked the lines)."""
    out: dict[int, list[int]] = {}
    for line in (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if "class_ids" in record:
            out[int(record["index"])] = [int(c) for c in record["class_ids"]]
    return out


def bag_to_drive(bag: str | Path, out: str | Path, options: BagOptions = DEFAULT_OPTIONS) -> ConvertSummary:
    """Write the bag's camera topic as a drive folder ``out`` (must not exist); see the module."""
    bag, out = Path(bag), Path(out)
    if out.exists():
        raise DriveError(f"{out}: exists already; a drive folder is never overwritten")
    read = read_bag_drive(bag, options)
    stamps = [t for _, t in read.drive.timestamps]
    labels = bag_labels(bag, stamps)
    labels_classes = _bag_label_classes(bag, stamps) if labels is not None else []
    out.mkdir(parents=True)
    height, width = read.images[0].shape[:2]
    fps = float(read.drive.meta.get("fps") or 15.0)
    writer = cv2.VideoWriter(str(out / "video.mkv"), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    if not writer.isOpened():
        raise DriveError(f"{out / 'video.mkv'}: OpenCV cannot write FFV1 video here")
    try:
        for image in read.images:
            writer.write(image)
    finally:
        writer.release()
    lines = [json.dumps({"index": i, "pts_ns": pts, "monotonic_ns": stamp})
             for i, (pts, stamp) in enumerate(read.drive.timestamps)]  # fmt: skip
    (out / "frames.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = dict(read.drive.meta)
    meta.setdefault("camera", f"bag {bag.name} {read.topic}")
    meta["converted_by"] = CONVERTER_VERSION
    meta["bag"] = {"path": str(bag), "topic": read.topic, "rejected": read.rejected}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    labelled = 0
    if labels is not None:
        rows = [json.dumps({"index": i, "boxes": [[round(float(v), 2) for v in box] for box in boxes],
                            "class_ids": labels_classes[i]})
                for i, boxes in enumerate(labels.boxes)]  # fmt: skip
        (out / "labels.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
        labelled = sum(len(b) > 0 for b in labels.boxes)
    copied = _copy_expected(expected_dir(bag), out / "expected")
    return ConvertSummary(bag, out, len(read.images), labelled, copied)


def _bag_label_classes(path: Path, stamps: list[int]) -> list[list[int]]:
    """Per frame, the integer class ids of ``/stopsign/labels`` (``class_id`` strings; 0 when not a number)."""
    from stopsign.edge.rosmsg.types import stamp_ns

    index = {stamp: i for i, stamp in enumerate(stamps)}
    out: list[list[int]] = [[] for _ in stamps]
    reader = open_reader(path)
    try:
        connections = [c for c in reader.connections if c.topic == LABELS_TOPIC]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            i = index[stamp_ns(msg.header.stamp)]  # bag_labels has checked every stamp
            ids = [d.results[0].hypothesis.class_id if d.results else "0" for d in msg.detections]
            out[i] = [int(c) if c.isdigit() else 0 for c in ids]
    finally:
        reader.close()
    return out


def _copy_expected(src: Path, dst: Path) -> int:
    files = sorted(src.glob("*.jsonl")) if src.is_dir() else []
    if files:
        dst.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, dst / path.name)
    return len(files)
