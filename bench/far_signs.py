"""Far and small signs: recall per sign size, mAP@0.5 and false positives, with and without tiles.

    .venv/bin/python bench/far_signs.py --data data/real --tiles none auto --json out/far.json \
        --markdown out/far.md --plot docs/img/far_signs_recall.png

Every image of the split goes through the runtime's own path (``FrameBatcher``: the whole frame
letterboxed, plus the ``--tiles`` plan for still images, then decode, NMS across tiles) on ONNX
Runtime (or ``--backend openvino``), at confidence 0.001 for AP. At the operating threshold (the ModelSpec's unless
``--threshold``) it reports, per ground-truth sign size, the recall (IoU >= 0.5, greedy by score):
sizes are the sign's longer side in the whole-frame network input (``input px``: what the model
sees without tiles) and in the source image (``frame px``). Also: images per second of model
work (``calls``: network inputs per image) and the share of confuser and negative images with a
box at the threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.calibration.dataset import ImageEntry, scan_data
from stopsign.calibration.metrics import ImageResult, summarize
from stopsign.edge.backends.base import BackendOptions, resolve_backend
from stopsign.edge.vision.letterbox import compute_transform
from stopsign.edge.vision.postprocess import box_iou
from stopsign.edge.vision.preprocess import FrameBatcher
from stopsign.edge.vision.tiles import TileConfig
from stopsign.train.data.layout import yolo_to_xyxy

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "edge" / "assets" / "stopsign.onnx"
AP_CONF = 0.001
INPUT_BUCKETS = ((0, 16), (16, 32), (32, 64), (64, 10_000))  # longer side in the network input, px
FRAME_BUCKETS = ((0, 32), (32, 64), (64, 128), (128, 100_000))  # longer side in the source image, px


def bucket_name(bounds: tuple[int, int]) -> str:
    low, high = bounds
    return f"<{high}" if low == 0 else (f">={low}" if high >= 10_000 else f"{low}-{high}")


def matched_ground_truth(det_xyxy: np.ndarray, det_score: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """(m,) bool: ground truths matched by a detection at IoU >= 0.5, greedy by descending score."""
    found = np.zeros(len(gt_xyxy), dtype=bool)
    if len(det_xyxy) == 0 or len(gt_xyxy) == 0:
        return found
    iou = box_iou(det_xyxy[np.argsort(-det_score, kind="stable")], gt_xyxy)
    for row in iou:
        candidates = np.where(found, -1.0, row)
        best = int(candidates.argmax())
        if candidates[best] >= 0.5:
            found[best] = True
    return found


@dataclass
class SizeTally:
    """Recall counts per size bucket."""

    found: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, hit: bool) -> None:
        self.total[name] = self.total.get(name, 0) + 1
        self.found[name] = self.found.get(name, 0) + int(hit)

    def table(self, buckets: tuple[tuple[int, int], ...]) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for bounds in buckets:
            name = bucket_name(bounds)
            total = self.total.get(name, 0)
            out[name] = {
                "signs": total,
                "found": self.found.get(name, 0),
                "recall": round(self.found.get(name, 0) / total, 4) if total else float("nan"),
            }
        return out


def evaluate(
    model: Path,
    entries: list[ImageEntry],
    tiles: TileConfig,
    threshold: float | None,
    threads: int,
    still: bool = True,
    backend_name: str = "onnxruntime",
) -> dict[str, Any]:
    """Run ``model`` with ``tiles`` over ``entries``; the metrics described in the module docstring.
    ``still=False`` plans ``auto`` tiles as for video (the horizon band) instead of the still grid."""
    backend = resolve_backend(backend_name, model)()
    spec = backend.load(model, None, BackendOptions(device="cpu", threads=threads))
    threshold = spec.operating_threshold if threshold is None else threshold
    batcher = FrameBatcher(spec, tiles, still=still)
    results: list[ImageResult] = []
    by_input, by_frame = SizeTally(), SizeTally()
    calls, model_s = 0, 0.0
    fired = {"confuser": [0, 0], "negative": [0, 0]}
    for entry in tqdm(entries, desc=f"tiles {tiles.text()}", unit="img", file=sys.stderr):
        image = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"far_signs: {entry.path}: unreadable image")
        height, width = image.shape[:2]
        batch = batcher(image)
        started = time.perf_counter()
        raw = backend.infer(batch)
        model_s += time.perf_counter() - started
        calls += len(batch)
        dets = batcher.decode(raw, AP_CONF, spec.nms_iou)
        gt = yolo_to_xyxy(entry.boxes, width, height)
        results.append(ImageResult(dets.xyxy, dets.score, gt, entry.role))
        keep = dets.score >= threshold
        found = matched_ground_truth(dets.xyxy[keep], dets.score[keep], gt)
        transform, _ = compute_transform((height, width), spec.input_size, resize=spec.resize)
        scale_x, scale_y = transform.scale_xy  # one scale when letterboxed, two when stretched
        for box, hit in zip(gt, found):
            side = float(max(box[2] - box[0], box[3] - box[1]))
            side_input = float(max((box[2] - box[0]) * scale_x, (box[3] - box[1]) * scale_y))
            by_input.add(_bucket(side_input, INPUT_BUCKETS), bool(hit))
            by_frame.add(_bucket(side, FRAME_BUCKETS), bool(hit))
        if entry.role in fired:
            fired[entry.role][0] += 1
            fired[entry.role][1] += int(keep.any())
    backend.close()
    metrics = summarize(results, threshold)
    return {
        "backend": backend_name,
        "tiles": tiles.text() if still or not tiles.enabled else f"{tiles.text()} (video)",
        "threshold": threshold,
        "images": len(entries),
        "signs": metrics.n_gt,
        "map50": round(metrics.map50, 4),
        "map50_95": round(metrics.map50_95, 4),
        "recall": round(metrics.recall_at_threshold, 4),
        "precision": round(metrics.precision_at_threshold, 4),
        "recall_by_input_px": by_input.table(INPUT_BUCKETS),
        "recall_by_frame_px": by_frame.table(FRAME_BUCKETS),
        "images_firing": {
            role: {"images": n, "firing": k, "rate": round(k / n, 4) if n else float("nan")}
            for role, (n, k) in fired.items()
        },
        "calls_per_image": round(calls / len(entries), 2),
        "model_ms_per_image": round(1000 * model_s / len(entries), 1),
    }


def _bucket(size: float, buckets: tuple[tuple[int, int], ...]) -> str:
    for bounds in buckets:
        if bounds[0] <= size < bounds[1]:
            return bucket_name(bounds)
    return bucket_name(buckets[-1])


def markdown(rows: list[dict[str, Any]]) -> str:
    heads = [bucket_name(b) for b in INPUT_BUCKETS]
    frame_heads = [bucket_name(b) for b in FRAME_BUCKETS]
    lines = [
        "| tiles | calls/img | model ms/img | mAP@0.5 | recall | precision | "
        + " | ".join(f"R {h} in" for h in heads)
        + " | "
        + " | ".join(f"R {h} fr" for h in frame_heads)
        + " | confusers firing | negatives firing |",
        "|" + "---|" * (8 + len(heads) + len(frame_heads)),
    ]
    for row in rows:
        cells = [
            row["tiles"], row["calls_per_image"], row["model_ms_per_image"], row["map50"], row["recall"],
            row["precision"],
        ]  # fmt: skip
        for table, names in (("recall_by_input_px", heads), ("recall_by_frame_px", frame_heads)):
            for name in names:
                cell = row[table][name]
                cells.append(
                    f"{cell['recall']:.2f} ({cell['found']}/{cell['signs']})" if cell["signs"] else "-"
                )
        for role in ("confuser", "negative"):
            fired = row["images_firing"][role]
            cells.append(f"{fired['firing']}/{fired['images']}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = [bucket_name(b) for b in INPUT_BUCKETS]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        values = [row["recall_by_input_px"][h]["recall"] for h in heads]
        xs = np.arange(len(heads)) + i * width
        ax.bar(
            xs,
            np.nan_to_num(values),
            width,
            label=f"tiles {row['tiles']} ({row['calls_per_image']} calls/img)",
        )
    counts = [rows[0]["recall_by_input_px"][h]["signs"] for h in heads] if rows else []
    ax.set_xticks(np.arange(len(heads)) + width * (len(rows) - 1) / 2)
    ax.set_xticklabels([f"{h} px\n({n} signs)" for h, n in zip(heads, counts)])
    ax.set_ylabel(f"recall at {rows[0]['threshold']:.2f}" if rows else "recall")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    ax.set_title("Recall by sign size in the whole-frame network input")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=SHIPPED, help="ONNX model (default: the shipped one)")
    parser.add_argument("--data", type=Path, required=True, help="data folder in the project layout")
    parser.add_argument("--split", default="val", help="split list to evaluate (default val)")
    parser.add_argument("--tiles", nargs="+", default=["none", "auto"], help="--tiles settings to compare")
    parser.add_argument(
        "--video-tiles", action="store_true", help="also run --tiles auto as on video (the horizon band)"
    )
    parser.add_argument("--threshold", type=float, help="operating threshold (default: the ModelSpec's)")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime (default) or openvino")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument("--plot", type=Path, help="bar chart of recall per size (PNG)")
    args = parser.parse_args(argv)
    entries = scan_data(args.data, args.split)
    if not entries:
        print(f"far_signs: no images in {args.data} split {args.split}", file=sys.stderr)
        return 2
    rows = [
        evaluate(
            args.model, entries, TileConfig.parse(t), args.threshold, args.threads, backend_name=args.backend
        )
        for t in args.tiles
    ]
    if args.video_tiles:
        rows.append(
            evaluate(
                args.model,
                entries,
                TileConfig("auto"),
                args.threshold,
                args.threads,
                still=False,
                backend_name=args.backend,
            )
        )
    table = markdown(rows)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"model": str(args.model), "data": str(args.data), "runs": rows}, indent=2)
        )
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
