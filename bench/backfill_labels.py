"""How good are the backfill's proposed labels? Precision and recall against true boxes, by size.

    .venv/bin/python bench/backfill_labels.py data/far_drives/* --tiles none --json out/bf.json --markdown out/bf.md

Every labelled drive is scanned as ``edge-data mine`` scans it (the detector with ``--tiles``, the
tracker; :func:`stopsign.train.data.mine.scan.scan_source`), and the backfill
(:mod:`stopsign.train.data.mine.backfill`) proposes boxes for the frames before each confirmed
track's first confident hit. Per drive, the *first confident detection* is the first frame whose
detector (with the tiles) has a box at the operating threshold overlapping a true box at IoU >= 0.5.
A proposal is right when it overlaps a true box of its frame at IoU >= 0.5 (each true box once).
Precision is over all proposals (by the proposal's size), recall over the true boxes of the frames
before the first confident detection (by the true box's size); sizes are the longer side in frame
pixels. "Frames earlier": first confident detection minus the earliest frame with a right proposal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stopsign.edge.replay.runner import load_backend
from stopsign.edge.vision.tiles import TileConfig
from stopsign.train.data.mine.backfill import backfill
from stopsign.train.data.mine.records import iou
from stopsign.train.data.mine.scan import ModelRun, scan_source

REPO = Path(__file__).resolve().parents[1]
SIZES = [(0, 16, "<16"), (16, 32, "16-32"), (32, 64, "32-64"), (64, 1e9, ">=64")]


def size_bucket(box: list[float]) -> str:
    side = max(box[2] - box[0], box[3] - box[1])
    return next(name for lo, hi, name in SIZES if lo <= side < hi)


def evaluate_drive(drive: Path, run: ModelRun, tiles: str, threshold: float) -> dict:
    scan = scan_source(str(drive), run, TileConfig.parse(tiles), progress=False)
    labels = scan.labels or {}
    distances = {}
    for line in (drive / "labels.jsonl").read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if "distance_m" in record:
            distances[int(record["index"])] = float(record["distance_m"])
    first_confident = next(
        (
            f.index
            for f in scan.frames
            if any(
                r[4] >= threshold and iou(r[:4], t) >= 0.5 for r in f.merged for t in labels.get(f.index, [])
            )
        ),
        None,
    )
    frame = scan.frames[0]
    proposals = backfill(scan.frames, (frame.width, frame.height))
    stats = {name: {"tp": 0, "proposals": 0, "found": 0, "truth": 0} for _, _, name in SIZES}
    right_frames = []
    for position, found in proposals.items():
        index = scan.frames[position].index
        truth = list(labels.get(index, []))
        for proposal in found:
            stats[size_bucket(proposal.xyxy)]["proposals"] += 1
            match = max(range(len(truth)), key=lambda k: iou(proposal.xyxy, truth[k]), default=None)
            if match is not None and iou(proposal.xyxy, truth[match]) >= 0.5:
                stats[size_bucket(proposal.xyxy)]["tp"] += 1
                stats[size_bucket(truth[match])]["found"] += 1
                right_frames.append(index)
                truth.pop(match)
    if first_confident is not None:
        for index in range(first_confident):
            for box in labels.get(index, []):
                stats[size_bucket(box)]["truth"] += 1
    earliest = min(right_frames) if right_frames else None
    return {
        "drive": drive.name,
        "tiles": tiles,
        "frames": len(scan.frames),
        "labelled_frames": sum(1 for boxes in labels.values() if boxes),
        "first_confident": first_confident,
        "earliest_right": earliest,
        "frames_earlier": (first_confident - earliest)
        if earliest is not None and first_confident is not None
        else 0,
        "distance_first_confident_m": distances.get(first_confident) if first_confident is not None else None,
        "distance_earliest_right_m": distances.get(earliest) if earliest is not None else None,
        "stats": stats,
    }


def totals(rows: list[dict]) -> dict:
    out = {name: {"tp": 0, "proposals": 0, "found": 0, "truth": 0} for _, _, name in SIZES}
    for row in rows:
        for name, values in row["stats"].items():
            for key, value in values.items():
                out[name][key] += value
    return out


def ratio(a: int, b: int) -> str:
    return f"{a / b:.2f} ({a}/{b})" if b else "-"


def markdown(groups: dict[str, list[dict]]) -> str:
    lines = [
        "| drives | tiles | precision | recall | P <16 | P 16-32 | P 32-64 | R <16 | R 16-32 | R 32-64 | "
        "R >=64 | median frames earlier | drives with a right proposal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in groups.items():
        t = totals(rows)
        tp = sum(v["tp"] for v in t.values())
        proposals = sum(v["proposals"] for v in t.values())
        found = sum(v["found"] for v in t.values())
        truth = sum(v["truth"] for v in t.values())
        earlier = sorted(r["frames_earlier"] for r in rows if r["earliest_right"] is not None)
        median = earlier[len(earlier) // 2] if earlier else 0
        lines.append(
            f"| {key.split('|')[0]} | {rows[0]['tiles']} | {ratio(tp, proposals)} | {ratio(found, truth)} | "
            + " | ".join(ratio(t[n]["tp"], t[n]["proposals"]) for n in ("<16", "16-32", "32-64"))
            + " | "
            + " | ".join(ratio(t[n]["found"], t[n]["truth"]) for n in ("<16", "16-32", "32-64", ">=64"))
            + f" | {median} | {len(earlier)}/{len(rows)} |"
        )
    lines += [
        "",
        "| drive | tiles | first confident frame (m) | earliest right proposal (m) | frames earlier |",
        "|---|---|---|---|---|",
    ]
    for rows in groups.values():
        for r in rows:
            fc = f"{r['first_confident']}" + (
                f" ({r['distance_first_confident_m']:.1f})" if r["distance_first_confident_m"] else ""
            )
            er = (
                "-"
                if r["earliest_right"] is None
                else f"{r['earliest_right']}"
                + (f" ({r['distance_earliest_right_m']:.1f})" if r["distance_earliest_right_m"] else "")
            )
            lines.append(f"| {r['drive']} | {r['tiles']} | {fc} | {er} | {r['frames_earlier']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("drives", nargs="+", type=Path, help="drive folders with labels.jsonl")
    parser.add_argument("--group", default="drives", help="name of this set of drives in the table")
    parser.add_argument("--model", type=Path, default=REPO / "edge" / "assets" / "stopsign.onnx")
    parser.add_argument("--tiles", nargs="+", default=["none", "auto"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    backend, spec = load_backend(args.model, "onnxruntime", args.threads)
    run = ModelRun(backend, spec)
    groups: dict[str, list[dict]] = {}
    for tiles in args.tiles:
        rows = []
        for drive in args.drives:
            if not (drive / "labels.jsonl").is_file():
                print(f"skip {drive}: no labels.jsonl", file=sys.stderr)
                continue
            rows.append(evaluate_drive(drive, run, tiles, spec.operating_threshold))
            r = rows[-1]
            print(
                f"{tiles:5s} {drive.name}: first confident {r['first_confident']}, earliest right "
                f"{r['earliest_right']}, {r['frames_earlier']} frames earlier",
                file=sys.stderr,
            )
        groups[f"{args.group}|{tiles}"] = rows
    text = markdown(groups)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(groups, indent=1))
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
