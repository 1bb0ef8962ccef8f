"""``edge-record``: record a drive from a camera (or any source URI) for later replay.

    edge-record --camera /dev/video0 --out drives/2026-11-27-morning --duration 600
    edge-record --camera "test://?size=640x480&fps=30" --out /tmp/drive --duration 5
    edge-record --camera /dev/video0 --format mcap --out drive.mcap --jpeg-quality 90 --focal-px 900
    edge-record convert samples/drives/day_approach day.mcap      a drive folder -> a ROS 2 bag
    edge-record convert day.mcap drives/day_again                 a bag -> a drive folder

Writes video.mkv (H.264, or MJPEG without x264enc), frames.jsonl and meta.json (DESIGN.md); with
--format mcap a rosbag2 MCAP of CompressedImage (JPEG) + CameraInfo instead (docs/ros2.md). Ctrl-C
or SIGTERM ends the recording cleanly; a recording cut by a crash or power loss stays readable.
Exit codes: 0 recorded; 1 the recording failed (the part written stays readable); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from stopsign.edge.replay.recorder import RecordError, record
from stopsign.edge.sources.gst_loader import GstUnavailableError
from stopsign.edge.sources.launch import CameraOptions
from stopsign.edge.sources.uri import SourceURIError, parse_size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-record", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--camera", required=True, help="/dev/videoN, csi://N, test://..., rtsp://..., gst://...")
    p.add_argument("--out", required=True, type=Path, help="new drive folder")
    p.add_argument("--duration", type=float, default=None, help="seconds to record (default: until Ctrl-C)")
    p.add_argument("--camera-size", help="requested mode, e.g. 1280x720")
    p.add_argument("--camera-fps", type=int, help="requested frame rate")
    p.add_argument("--focal-px", type=float, help="focal length in pixels, stored as intrinsics in meta.json")
    p.add_argument(
        "--format", choices=["drive", "mcap"], default="drive", help="a drive folder, or a rosbag2 MCAP bag"
    )
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of --format mcap (1-100)")
    return p


def build_convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-record convert",
        description="A drive folder -> a ROS 2 bag (rosbag2 MCAP), or a bag (.mcap, .bag, rosbag2 folder) -> "
        "a drive folder; labels, intrinsics, timestamps and expected outputs go along (docs/ros2.md).",
    )
    p.add_argument("source", type=Path, help="drive folder or bag")
    p.add_argument("out", type=Path, help="new bag (OUT.mcap, or a folder) or new drive folder")
    p.add_argument("--topic", help="bag -> drive: the image topic (needed when the bag has several)")
    p.add_argument("--info", help="bag -> drive: the CameraInfo topic")
    p.add_argument(
        "--image-format",
        choices=["png", "jpeg"],
        default="png",
        help="drive -> bag: png (lossless: replays to the drive's expected outputs) or jpeg",
    )
    p.add_argument("--jpeg-quality", type=int, default=90)
    return p


def convert_main(argv: Sequence[str]) -> int:
    from stopsign.edge.replay.bag_convert import bag_to_drive, drive_to_bag
    from stopsign.edge.replay.drive import DriveError
    from stopsign.edge.sources.bag import BagOptions
    from stopsign.edge.sources.base import SourceOpenError
    from stopsign.edge.sources.uri import is_bag_path

    args = build_convert_parser().parse_args(argv)
    if not args.source.exists():
        print(f"edge-record convert: {args.source}: no such drive or bag", file=sys.stderr)
        return 2
    try:
        if is_bag_path(args.source):
            summary = bag_to_drive(args.source, args.out, BagOptions(args.topic, args.info))
        else:
            summary = drive_to_bag(args.source, args.out, args.image_format, args.jpeg_quality)
    except (DriveError, SourceOpenError, FileExistsError, ValueError) as exc:
        print(f"edge-record convert: {exc}", file=sys.stderr)
        return 2
    print(f"converted {summary.source} -> {summary.out}: {summary.frames} frames, {summary.labels} labelled, "
          f"{summary.expected} expected-output files")  # fmt: skip
    return 0


def record_mcap(args: argparse.Namespace, stop: threading.Event) -> int:
    from stopsign.edge.replay.bag_record import record_bag
    from stopsign.edge.sources.base import SourceError

    if not 1 <= args.jpeg_quality <= 100:
        print("edge-record: --jpeg-quality must be in 1..100", file=sys.stderr)
        return 2
    try:
        size = parse_size(args.camera_size, "camera_size") if args.camera_size else None
        options = CameraOptions(size=size, fps=args.camera_fps)
        summary = record_bag(
            args.camera, args.out, args.duration, options, args.focal_px, stop, args.jpeg_quality
        )
    except (SourceURIError, ValueError, FileExistsError) as exc:
        print(f"edge-record: {exc}", file=sys.stderr)
        return 2
    except SourceError as exc:
        print(f"edge-record: {exc}", file=sys.stderr)
        return 1
    if summary.error:
        print(
            f"edge-record: {summary.error}; {summary.frames} frames written to {summary.path}",
            file=sys.stderr,
        )
        return 1
    print(f"recorded {summary.frames} frames (rosbag2 MCAP, JPEG) to {summary.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["convert"]:
        return convert_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        print("edge-record: --duration must be > 0", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.format == "mcap":
        return record_mcap(args, stop)
    try:
        size = parse_size(args.camera_size, "camera_size") if args.camera_size else None
        options = CameraOptions(size=size, fps=args.camera_fps)
        intrinsics = {"fx": args.focal_px, "fy": args.focal_px} if args.focal_px else None
        summary = record(args.camera, args.out, args.duration, options, intrinsics, stop)
    except (RecordError, GstUnavailableError, SourceURIError, ValueError) as exc:
        print(f"edge-record: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (SourceURIError, ValueError)) else 1
    if summary.error:
        print(
            f"edge-record: {summary.error}; {summary.frames} frames written to {summary.folder}",
            file=sys.stderr,
        )
        return 1
    print(f"recorded {summary.frames} frames ({summary.codec}) to {summary.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
