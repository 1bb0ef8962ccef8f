"""``edge-record``: record a drive from a camera (or any source URI) for later replay.

    edge-record --camera /dev/video0 --out drives/2026-11-27-morning --duration 600
    edge-record --camera "test://?size=640x480&fps=30" --out /tmp/drive --duration 5

Writes video.mkv (H.264, or MJPEG without x264enc), frames.jsonl and meta.json (DESIGN.md). Ctrl-C
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        print("edge-record: --duration must be > 0", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
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
