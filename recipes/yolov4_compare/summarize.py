"""The YOLOv4-tiny vs YOLOv5n table of docs/yolov4.md from the runs gpu.sh leaves.

    python recipes/yolov4_compare/summarize.py RUNS --budget-min 3 --img 416 \\
        --markdown comparison.md --json comparison.json

RUNS holds ``device.txt`` (what the latency was measured on) and one ``cmp_<name>`` folder per model: the trainer's ``results.csv`` and
``weights/best/spec.json``, ``train_seconds`` (written by gpu.sh), ``far.json`` (bench/far_signs.py
--tiles none) and ``gpu_bench.json`` (edge-bench --mode model). A missing piece is reported as
missing in the table, never guessed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

SIZE_BUCKETS = ("<16", "16-32", "32-64", ">=64")


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def summarize_run(folder: Path) -> dict[str, Any]:
    """One model's figures; absent inputs give None."""
    row: dict[str, Any] = {"model": folder.name.removeprefix("cmp_")}
    results = folder / "results.csv"
    if results.is_file():
        with results.open() as handle:
            epochs = list(csv.DictReader(handle))
        maps = [float(e["metrics/mAP_0.5"]) for e in epochs if e.get("metrics/mAP_0.5")]
        row["epochs"] = len(epochs)
        row["best_map50_trainer"] = round(max(maps), 4) if maps else None
    seconds = folder / "train_seconds"
    row["train_seconds"] = int(seconds.read_text()) if seconds.is_file() else None
    spec = _read_json(folder / "weights" / "best" / "spec.json")
    row["architecture"] = spec.get("architecture") if spec else None
    far = _read_json(folder / "far.json")
    if far and far.get("runs"):
        run = far["runs"][0]
        row.update(
            map50=run["map50"],
            recall=run["recall"],
            precision=run["precision"],
            threshold=run["threshold"],
            recall_by_input_px={k: (v["found"], v["signs"]) for k, v in run["recall_by_input_px"].items()},
            confusers_firing=(run["images_firing"].get("confuser") or {}).get("firing"),
            confuser_images=(run["images_firing"].get("confuser") or {}).get("images"),
        )
    bench = _read_json(folder / "gpu_bench.json")
    if bench and bench.get("runs"):
        run = bench["runs"][0]
        row.update(
            gpu_backend=run["backend"],
            gpu_precision=run["precision"],
            gpu_p50_ms=run["latency_ms"]["p50"],
            gpu_p99_ms=run["latency_ms"]["p99"],
        )
    return row


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]], budget_min: float, img: int, device: str = "unknown device") -> str:
    names = [r["model"] for r in rows]
    lines = [
        f"| {budget_min:g} min of training each, {img} px, from scratch | " + " | ".join(names) + " |",
        "|---" * (len(rows) + 1) + "|",
    ]

    def add(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    add(
        "epochs that fitted (training seconds)",
        [f"{r.get('epochs', 'missing')} ({_cell(r.get('train_seconds'))} s)" for r in rows],
    )
    add("mAP@0.5, best epoch (trainer's validation)", [_cell(r.get("best_map50_trainer")) for r in rows])
    add("mAP@0.5, runtime path (bench/far_signs.py)", [_cell(r.get("map50")) for r in rows])
    add(
        "recall / precision at the F1 threshold",
        [f"{_cell(r.get('recall'))} / {_cell(r.get('precision'))}" for r in rows],
    )
    sizes = []
    for r in rows:
        by_size = r.get("recall_by_input_px") or {}
        sizes.append(
            ", ".join(f"{by_size[b][0]}/{by_size[b][1]}" if b in by_size else "missing" for b in SIZE_BUCKETS)
        )
    add("recall by sign size in the input: " + ", ".join(SIZE_BUCKETS) + " px", sizes)
    add(
        "confuser images firing",
        [f"{_cell(r.get('confusers_firing'))} / {_cell(r.get('confuser_images'))}" for r in rows],
    )
    add(
        f"model-only p50 / p99 ms on {device} (edge-bench, torch backend, batch 1)",
        [
            f"{_cell(r.get('gpu_p50_ms'), 2)} / {_cell(r.get('gpu_p99_ms'), 2)} ({r.get('gpu_precision', 'missing')})"
            for r in rows
        ],
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, help="folder holding the cmp_<name> run folders")
    parser.add_argument("--budget-min", type=float, required=True)
    parser.add_argument("--img", type=int, required=True)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    folders = sorted(p for p in args.runs.glob("cmp_*") if p.is_dir())
    if not folders:
        print(f"summarize: no cmp_* run folders in {args.runs}", file=sys.stderr)
        return 1
    rows = [summarize_run(folder) for folder in folders]
    device_file = args.runs / "device.txt"
    device = device_file.read_text().strip() if device_file.is_file() else "unknown device"
    table = markdown(rows, args.budget_min, args.img, device)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        summary = {"budget_min": args.budget_min, "img": args.img, "device": device, "models": rows}
        args.json.write_text(json.dumps(summary, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
