"""``edge-replay``: replay recorded drives through a model and check them against expected outputs.

    edge-replay DRIVE/                         compare with DRIVE/expected/<model sha[:16]>.jsonl
                                               (INT8/FP16: <model sha[:16]>.<runtime>.jsonl)
    edge-replay DRIVE/ --update-expected       (re)write the expected outputs for this model
    edge-replay DRIVE/ --expected FILE         compare with a given file
    edge-replay DRIVE/ --realtime              recorded speed, live-mode frame skipping
    edge-replay DRIVES/* --report out/         table + timeline PNG per drive (labels when present)
    edge-replay DRIVES/* --report out/ --tiles auto --enter-threshold 0.4   the same, another set-up
    edge-replay drive.mcap                     a ROS bag: its camera topic, frames keyed by stamp;
                                               expected outputs in drive.mcap.expected/ (docs/ros2.md)

Exit codes: 0 match (or written); 1 mismatch, with a diff naming frames and events; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from stopsign.edge.backends.base import BackendError
from stopsign.edge.model.spec import ModelSpecError
from stopsign.edge.replay.bag_convert import drive_labels
from stopsign.edge.replay.drive import DriveError
from stopsign.edge.replay.expected import (
    ExpectedError,
    Tolerance,
    compare,
    expected_for,
    read_expected,
    to_lines,
    write_expected,
)
from stopsign.edge.replay.metrics import drive_metrics
from stopsign.edge.replay.report import markdown_table, timeline_png
from stopsign.edge.replay.runner import ReplayResult, replay
from stopsign.edge.tracking import AHEAD
from stopsign.edge.vision.tiles import TileConfig, TileConfigError

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "stopsign.onnx"
MAX_DIFF_LINES = 30


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "drives",
        nargs="+",
        type=Path,
        help="recorded drive folders, or ROS bags (.mcap, .bag, rosbag2 folders)",
    )
    p.add_argument(
        "--model", type=Path, default=SHIPPED_MODEL, help=f"model (default: the shipped {SHIPPED_MODEL.name})"
    )
    p.add_argument(
        "--backend",
        default="auto",
        help="auto (the given file: never a model beside it), onnxruntime, openvino, torch or tensorrt",
    )
    p.add_argument("--conf", type=float, default=0.25, help="confidence floor of recorded detections")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--expected", type=Path, help="expected outputs to compare with (one drive)")
    mode.add_argument("--update-expected", action="store_true", help="write expected outputs for this model")
    mode.add_argument("--realtime", action="store_true", help="recorded speed with live-mode frame skipping")
    p.add_argument("--tolerance", default="iou=0.9,score=0.02", help="box IoU and score tolerance")
    p.add_argument("--report", type=Path, help="write report.md and a timeline PNG per drive here")
    p.add_argument(
        "--tiles", default="none", help="high-resolution tiles as in edge-detect: none, auto or x,y,w,h[;...]"
    )
    p.add_argument(
        "--enter-threshold",
        type=float,
        help="tracker enter threshold instead of 0.8 x the model's operating one (stay: 0.6 x enter)",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: identical results on every run)")
    return p


def _check(drive: Path, result: ReplayResult, args: argparse.Namespace, tolerance: Tolerance) -> int:
    path = args.expected or expected_for(result)
    expected = read_expected(path)
    diffs = compare(expected, to_lines(result), tolerance)
    if not diffs:
        print(f"{drive}: matches {path.name} ({len(result.frames)} frames, {len(result.events)} events)")
        return 0
    print(f"{drive}: {len(diffs)} difference(s) from {path}:")
    recorded_with = str(expected[0].get("model_sha256"))
    if recorded_with != result.model_sha256:
        print(
            f"  (expected outputs were made with model {recorded_with[:16]}, replayed {result.model_sha256[:16]})"
        )
    for line in diffs[:MAX_DIFF_LINES]:
        print(f"  {line}")
    if len(diffs) > MAX_DIFF_LINES:
        print(f"  ... and {len(diffs) - MAX_DIFF_LINES} more")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        tolerance = Tolerance.parse(args.tolerance)
    except ValueError as exc:
        print(f"edge-replay: {exc}", file=sys.stderr)
        return 2
    try:
        tiles = TileConfig.parse(args.tiles)
    except TileConfigError as exc:
        print(f"edge-replay: --tiles: {exc}", file=sys.stderr)
        return 2
    if args.enter_threshold is not None and not 0.0 < args.enter_threshold <= 1.0:
        print(
            f"edge-replay: --enter-threshold must be in (0, 1], got {args.enter_threshold}", file=sys.stderr
        )
        return 2
    if args.update_expected and (tiles.enabled or args.enter_threshold is not None):
        print("edge-replay: expected outputs are for the runtime's defaults: --update-expected takes "
              "neither --tiles nor --enter-threshold", file=sys.stderr)  # fmt: skip
        return 2
    if args.expected and len(args.drives) != 1:
        print("edge-replay: --expected takes exactly one drive", file=sys.stderr)
        return 2
    if not args.model.is_file():
        print(f"edge-replay: model {args.model} not found", file=sys.stderr)
        return 2
    status = 0
    rows = []
    for drive in args.drives:
        try:
            result = replay(
                drive, args.model, args.backend, args.conf, args.realtime, args.threads, tiles, args.enter_threshold
            )  # fmt: skip
            labels = drive_labels(drive, result.timestamps)
            if args.update_expected:
                print(f"{drive}: wrote {write_expected(result)}")
            elif args.realtime:
                events = [e for e in result.events if e["event"] == AHEAD]
                print(f"{drive}: realtime, {len(result.frames)} processed, {result.skipped} skipped, "
                      f"{len(events)} stop_sign_ahead at frames {[e['frame'] for e in events]}")  # fmt: skip
            elif not args.report:
                status = max(status, _check(drive, result, args, tolerance))
        except (DriveError, ExpectedError, BackendError, ModelSpecError) as exc:
            print(f"edge-replay: {exc}", file=sys.stderr)
            return 2
        metrics = drive_metrics(result, labels) if labels is not None else None
        if metrics is not None:
            print(f"{drive}: metrics {json.dumps(metrics.to_dict())}")
        if args.report:
            timeline_png(result, labels, args.report / f"{drive.name}.png")
            rows.append((drive.name, metrics, sum(e["event"] == AHEAD for e in result.events)))
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        table = markdown_table(rows)
        (args.report / "report.md").write_text(table)
        print(table)
    return status


if __name__ == "__main__":
    sys.exit(main())
