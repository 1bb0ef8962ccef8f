"""How early, and how cleanly, does the car hear "stop sign ahead"? Drives x tiles x enter threshold.

    .venv/bin/python bench/first_event.py samples/drives/* data/eval_drives/* data/far_drives/* \
        --tiles none auto --enter 0.5 0.4 0.3 --json out/first_event.json --markdown out/first_event.md

Each labelled drive is replayed (``stopsign.edge.replay.runner.replay``: the runtime's batcher,
decode, NMS across tiles and tracker, on the recorded clock) for every ``--tiles`` setting and
tracker enter threshold. Per setting: approach drives missed, false events over all drives, and
per approach drive the first ``stop_sign_ahead`` frame and distance: the true distance on
far-approach drives (their labels carry it), else the tracker's pinhole estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stopsign.edge.replay.bag_convert import drive_labels
from stopsign.edge.replay.metrics import drive_metrics
from stopsign.edge.replay.runner import replay
from stopsign.edge.tracking import AHEAD
from stopsign.edge.vision.tiles import TileConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "edge" / "assets" / "stopsign.onnx"


def true_distances(drive: Path) -> dict[int, float]:
    """Frame -> labelled distance (m), for drives whose labels carry ``distance_m``."""
    out: dict[int, float] = {}
    if not (drive / "labels.jsonl").is_file():  # a bag: its labels carry boxes only (pinhole estimate)
        return out
    for line in (drive / "labels.jsonl").read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if "distance_m" in record:
            out[int(record["index"])] = float(record["distance_m"])
    return out


def run_setting(
    model: Path, drives: list[Path], tiles: str, enter: float, threads: int, backend: str = "onnxruntime"
) -> dict[str, Any]:
    rows = []
    for drive in drives:
        result = replay(drive, model, backend, 0.25, threads=threads, tiles=TileConfig.parse(tiles),
                        enter_threshold=enter)  # fmt: skip
        labels = drive_labels(drive, result.timestamps)
        if labels is None:
            continue
        metrics = drive_metrics(result, labels)
        first = next(
            (e for e in result.events if e["event"] == AHEAD and e["frame"] == metrics.event_frame), None
        )
        truth = true_distances(drive).get(metrics.event_frame) if metrics.event_frame is not None else None
        rows.append(
            {
                "drive": drive.name,
                "approach": metrics.labelled_frames > 0,
                "event_frame": metrics.event_frame,
                "first_label_frame": metrics.first_label_frame,
                "distance_m": truth if truth is not None else (first or {}).get("distance_m"),
                "distance_is_true": truth is not None,
                "events": metrics.events,
                "false_events": metrics.false_events,
                "missed": metrics.missed,
                "id_switches": metrics.id_switches,
            }
        )
        print(f"  {tiles:5s} enter {enter:.2f} {drive.name}: event frame {metrics.event_frame}, "
              f"distance {rows[-1]['distance_m']}, false events {metrics.false_events}", file=sys.stderr)  # fmt: skip
    approaches = [r for r in rows if r["approach"]]
    return {
        "tiles": tiles,
        "enter": enter,
        "drives": len(rows),
        "approaches": len(approaches),
        "missed": sum(r["missed"] for r in approaches),
        "false_events": sum(r["false_events"] for r in rows),
        "rows": rows,
    }


def markdown(settings: list[dict[str, Any]]) -> str:
    summary = ["| tiles | enter | approaches missed | false events (all drives) | far drives: median first-event distance (m) |",
               "|---|---|---|---|---|"]  # fmt: skip
    for s in settings:
        far = sorted(
            r["distance_m"] for r in s["rows"] if r["distance_is_true"] and r["distance_m"] is not None
        )
        median = f"{far[len(far) // 2]:.1f}" if far else "-"
        summary.append(
            f"| {s['tiles']} | {s['enter']} | {s['missed']}/{s['approaches']} | {s['false_events']} | {median} |"
        )
    names = [r["drive"] for r in settings[0]["rows"] if r["approach"]] if settings else []
    head = "| drive | " + " | ".join(f"{s['tiles']} @ {s['enter']}" for s in settings) + " |"
    detail = [head, "|---|" + "---|" * len(settings)]
    for name in names:
        cells = []
        for s in settings:
            row = next(r for r in s["rows"] if r["drive"] == name)
            if row["event_frame"] is None:
                cells.append("missed")
            else:
                dist = f", {row['distance_m']:.1f} m" if row["distance_m"] is not None else ""
                cells.append(f"{row['event_frame']}{dist}")
        detail.append(f"| {name} | " + " | ".join(cells) + " |")
    return (
        "\n".join(summary) + "\n\nFirst event per approach drive (frame, distance):\n\n" + "\n".join(detail)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("drives", nargs="+", type=Path, help="labelled drive folders")
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--tiles", nargs="+", default=["none", "auto"])
    parser.add_argument(
        "--enter", nargs="+", type=float, default=[0.5, 0.4, 0.3], help="tracker enter thresholds"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        help="onnxruntime (default), openvino (an INT8 IR too), torch, tensorrt",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    settings = [
        run_setting(args.model, args.drives, tiles, enter, args.threads, args.backend)
        for tiles in args.tiles
        for enter in args.enter
    ]
    table = markdown(settings)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "settings": settings}, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
