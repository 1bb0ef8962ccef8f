"""Corruption benchmark (after ImageNet-C / COCO-C): the validation split under what a car's camera sees.

    nice -n 5 .venv/bin/python bench/corruptions.py --data data/real --json out/robustness.json \
        --markdown out/robustness.md --plot docs/img/robustness.png

Every image of the split is corrupted on the fly (``stopsign.train.data.corruptions``: fog,
over/under-exposure, low contrast, colour cast, glare, motion blur, defocus, rain, dirty
windscreen, JPEG, H.264-like blocks) at severities 1-5, seeded per (corruption, image), and never
stored. Each image is first resized so its longer side is the model's input size (what the
letterbox would do anyway), then corrupted, so the cost of a corruption does not depend on the
source resolution and block artefacts are those of a stream at the model's resolution.

Detections go through the runtime's path (``FrameBatcher``: letterbox, ``--tiles``, decode, NMS)
on ONNX Runtime at confidence 0.001 for AP, and are scored with the project's metrics
(``stopsign.edge.vision.metrics``: COCO matching, mAP@0.5). Per corruption and severity: mAP@0.5,
recall at the operating threshold (the ModelSpec's unless ``--threshold``) and the share of
confuser images with a box at it. Summary, as COCO-C: mPC = mean mAP@0.5 over all corruptions
and severities, rPC = mPC / clean mAP@0.5; and the mean corruption error relative to clean,
CE = mean(1 - mAP) / (1 - clean mAP) (1.0: no worse than clean).

``--model`` takes several ONNX files (each evaluated in turn). The official COCO yolov5n is a
reference only: a user with its weights imports them (``edge-train import-yolov5``, then
``edge-export onnx``) and passes the ONNX here; its ``stop sign`` class is picked by name. No
such weights are in this repository and nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stopsign.calibration.dataset import ImageEntry, scan_data
from stopsign.calibration.errors import CalibrationError
from stopsign.edge.backends.base import BackendOptions, resolve_backend
from stopsign.edge.vision import metrics as M
from stopsign.edge.vision.preprocess import FrameBatcher
from stopsign.edge.vision.tiles import TileConfig
from stopsign.train.data.corruptions import CORRUPTIONS, corrupt
from stopsign.train.data.layout import yolo_to_xyxy

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "edge" / "assets" / "stopsign.onnx"
AP_CONF = 0.001


def load_split(entries: list[ImageEntry], side: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(image resized to a longer side of ``side`` px, (m, 4) pixel boxes, role) per entry."""
    out = []
    for entry in entries:
        image = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"corruptions: {entry.path}: unreadable image")
        h, w = image.shape[:2]
        scale = side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        out.append((resized, yolo_to_xyxy(entry.boxes, size[0], size[1]), entry.role))
    return out


def stop_class(names: list[str]) -> int:
    """Index of the stop-sign class: 0 for the project's models, 'stop sign' (11) for COCO."""
    for i, name in enumerate(names):
        if "stop" in name.lower().replace("_", " "):
            return i
    raise SystemExit(f"corruptions: the model has no stop-sign class (classes: {names[:10]}...)")


class Evaluator:
    """One model on ONNX Runtime through the runtime's batcher; scores a list of images."""

    def __init__(self, model: Path, tiles: str, threads: int, threshold: float | None) -> None:
        self.backend = resolve_backend("onnxruntime", model)()
        self.spec = self.backend.load(model, None, BackendOptions(device="cpu", threads=threads))
        self.batcher = FrameBatcher(self.spec, TileConfig.parse(tiles), still=True)
        self.threshold = self.spec.operating_threshold if threshold is None else threshold
        self.cls = stop_class(list(self.spec.class_names))

    def score(
        self, images: list[np.ndarray], split: list[tuple[np.ndarray, np.ndarray, str]]
    ) -> dict[str, Any]:
        matched: list[M.MatchedImage] = []
        confuser_top: list[float] = []
        for image, (_, gt, role) in zip(images, split):
            dets = self.batcher.decode(self.backend.infer(self.batcher(image)), AP_CONF, self.spec.nms_iou)
            mine = dets.class_id == self.cls
            xyxy, score = dets.xyxy[mine], dets.score[mine]
            matched.append(M.match_image(xyxy, score, np.zeros(len(score)), gt, np.zeros(len(gt))))
            if role == "confuser":
                confuser_top.append(float(score.max()) if len(score) else 0.0)
        metrics = M.compute_metrics(matched, 1)
        _, recall = metrics.at_conf(self.threshold)
        firing = sum(s >= self.threshold and s > 0 for s in confuser_top)
        return {
            "map50": round(metrics.map50, 4),
            "recall": round(recall, 4),
            "confuser_rate": round(firing / len(confuser_top), 4) if confuser_top else float("nan"),
            "confusers_firing": int(firing),
        }

    def close(self) -> None:
        self.backend.close()


def summarise(clean: dict[str, Any], table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """mPC, rPC, mean recall and confuser rate, and CE per corruption and overall (see docstring)."""
    cells = [cell for rows in table.values() for cell in rows.values()]
    if not cells:
        return {}
    clean_error = max(1e-6, 1 - clean["map50"])
    mpc = float(np.mean([c["map50"] for c in cells]))
    ce = {
        name: round(float(np.mean([1 - c["map50"] for c in rows.values()])) / clean_error, 3)
        for name, rows in table.items()
    }
    return {
        "mPC": round(mpc, 4),
        "rPC": round(mpc / max(clean["map50"], 1e-6), 4),
        "mean_recall": round(float(np.mean([c["recall"] for c in cells])), 4),
        "mean_confuser_rate": round(float(np.mean([c["confuser_rate"] for c in cells])), 4),
        "mCE": round(float(np.mean(list(ce.values()))), 3),
        "CE": ce,
    }


def run_model(
    model: Path,
    split: list[tuple[np.ndarray, np.ndarray, str]],
    args: argparse.Namespace,
    save: Any,
) -> dict[str, Any]:
    evaluator = Evaluator(model, args.tiles, args.threads, args.threshold)
    started = time.perf_counter()
    result: dict[str, Any] = {"model": str(model), "threshold": evaluator.threshold, "tiles": args.tiles}
    result["clean"] = evaluator.score([image for image, _, _ in split], split)
    print(f"{model.name} clean: {result['clean']}", file=sys.stderr, flush=True)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    result["corruptions"] = table
    for name in args.corruptions:
        index = list(CORRUPTIONS).index(name)
        table[name] = {}
        for severity in args.severities:
            corrupted = [
                corrupt(name, image, severity, np.random.default_rng((args.seed, index, i)))
                for i, (image, _, _) in enumerate(split)
            ]
            table[name][str(severity)] = evaluator.score(corrupted, split)
        row = " ".join(f"{s}:{c['map50']:.3f}/{c['recall']:.3f}" for s, c in table[name].items())
        print(f"{model.name} {name} (mAP@0.5/recall): {row}", file=sys.stderr, flush=True)
        result["summary"] = summarise(result["clean"], table)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        save(result)  # after every corruption: a long run that is stopped keeps what it measured
    evaluator.close()
    result["summary"] = summarise(result["clean"], table)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        c, s = r["clean"], r.get("summary", {})
        lines.append(
            f"**{Path(r['model']).name}** (threshold {r['threshold']:.3f}, tiles {r['tiles']}): clean mAP@0.5 "
            f"{c['map50']:.3f}, recall {c['recall']:.3f}, confusers firing {c['confuser_rate']:.3f}; "
            f"mPC {s.get('mPC', float('nan')):.3f}, rPC {s.get('rPC', float('nan')):.3f}, "
            f"mCE {s.get('mCE', float('nan')):.2f}, mean recall {s.get('mean_recall', float('nan')):.3f}, "
            f"mean confuser rate {s.get('mean_confuser_rate', float('nan')):.3f}; {r.get('wall_s', 0):.0f} s"
        )
        lines.append("")
        severities = sorted({v for rows in r["corruptions"].values() for v in rows}, key=int)
        lines.append(
            "| corruption | "
            + " | ".join(f"sev {v}" for v in severities)
            + " | CE | confusers firing (max) |"
        )
        lines.append("|---|" + "---|" * (len(severities) + 2))
        for name, rows in r["corruptions"].items():
            cells = [
                f"{rows[v]['map50']:.3f} / {rows[v]['recall']:.2f}" if v in rows else "-" for v in severities
            ]
            worst = max(rows[v]["confuser_rate"] for v in rows)
            lines.append(
                f"| {name} | "
                + " | ".join(cells)
                + f" | {s.get('CE', {}).get(name, float('nan')):.2f} | {worst:.3f} |"
            )
        means = []
        for v in severities:
            cells = [rows[v] for rows in r["corruptions"].values() if v in rows]
            means.append(
                f"{np.mean([c['map50'] for c in cells]):.3f} / {np.mean([c['recall'] for c in cells]):.2f}"
                f" ({len(cells)})"
            )
        lines.append("| mean (corruptions) | " + " | ".join(means) + " | | |")
        lines.append("")
        lines.append(
            "Cells: mAP@0.5 / recall at the operating threshold; the mean row over the corruptions measured."
        )
        lines.append("")
    return "\n".join(lines)


def severity_curve(
    clean: dict[str, Any], rows: dict[str, dict[str, Any]], key: str
) -> tuple[list[int], list[float]]:
    """One corruption's curve: severity 0 (the clean score) then each measured severity, ascending.

    Merged runs (``--from-json``) hold severities in the order they were measured (e.g. 3, 5, 1, 2, 4),
    so the keys are sorted here; ``key`` is ``map50`` or ``recall``."""
    severities = sorted(rows, key=int)
    return [0, *(int(v) for v in severities)], [clean[key], *(rows[v][key] for v in severities)]


def plot(results: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    colours = plt.get_cmap("tab20")
    styles = ["-", "--", ":", "-."]
    for m, r in enumerate(results):
        tag = Path(r["model"]).stem
        for k, (name, rows) in enumerate(r["corruptions"].items()):
            for ax, key in zip(axes, ("map50", "recall")):
                xs, ys = severity_curve(r["clean"], rows, key)
                label = name if len(results) == 1 else f"{tag}: {name}"
                ax.plot(xs, ys, styles[m % len(styles)], color=colours(k), marker="o", ms=3, label=label)
    axes[0].set_ylabel("mAP@0.5")
    axes[1].set_ylabel(f"recall at {results[0]['threshold']:.2f}" if results else "recall")
    for ax in axes:
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower left")
    fig.suptitle("Validation split under camera corruptions (bench/corruptions.py)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def examples(split: list[tuple[np.ndarray, np.ndarray, str]], index: int, seed: int, out: Path) -> None:
    """A grid: one validation image under every corruption at severities 1, 3 and 5 (JPEG)."""
    image = split[index][0]
    tile_w = 200
    tile_h = round(image.shape[0] * tile_w / image.shape[1])
    rows = []
    for k, name in enumerate(CORRUPTIONS):
        tiles = [
            cv2.resize(corrupt(name, image, s, np.random.default_rng((seed, k, index))), (tile_w, tile_h))
            for s in (1, 3, 5)
        ]
        label = np.full((tile_h, 130, 3), 255, np.uint8)
        cv2.putText(label, name, (4, tile_h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.hstack([label, *tiles]))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])


def merge_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """Runs of several ``--json`` files (e.g. a run stopped part-way and one that did the rest)
    merged per model: the first file's clean scores, every file's corruption cells."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            runs = json.loads(path.read_text())["runs"]
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"corruptions: {path}: not a bench/corruptions.py result ({exc})") from exc
        for run in runs:
            if "clean" not in run:
                continue
            into = merged.setdefault(run["model"], {**run, "corruptions": {}, "wall_s": 0.0})
            for name, rows in run.get("corruptions", {}).items():
                into["corruptions"].setdefault(name, {}).update(rows)
            into["wall_s"] += run.get("wall_s", 0.0)
    for run in merged.values():
        run["summary"] = summarise(run["clean"], run["corruptions"])
    return list(merged.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, nargs="+", default=[SHIPPED], help="ONNX models (default: shipped)"
    )
    parser.add_argument(
        "--data", type=Path, default=REPO / "data" / "real", help="data folder in the project layout"
    )
    parser.add_argument("--split", default="val", help="split list to evaluate (default val)")
    parser.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS), choices=list(CORRUPTIONS))
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5], choices=range(1, 6))
    parser.add_argument("--limit", type=int, default=0, help="first N images only (a quick look; 0 = all)")
    parser.add_argument("--tiles", default="none", help="--tiles of the runtime (default none: whole frame)")
    parser.add_argument("--threshold", type=float, help="operating threshold (default: the ModelSpec's)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    parser.add_argument("--json", type=Path, help="write the results here (also after every corruption)")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--plot", type=Path, help="mAP@0.5 and recall by severity (PNG)")
    parser.add_argument("--examples", type=Path, help="grid of one image under every corruption (JPEG)")
    parser.add_argument(
        "--example-index", type=int, default=0, help="which validation image --examples shows"
    )
    parser.add_argument(
        "--from-json", type=Path, nargs="+", help="no evaluation: tables and plot from earlier --json files"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        merged = merge_runs(args.from_json)
        print(markdown(merged))
        if args.markdown:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(markdown(merged) + "\n")
        if args.plot:
            plot(merged, args.plot)
        return 0
    for model in args.model:
        if not model.is_file():
            print(f"corruptions: model {model} does not exist", file=sys.stderr)
            return 2
    try:
        entries = scan_data(args.data, args.split)
    except CalibrationError as exc:
        print(f"corruptions: {exc}", file=sys.stderr)
        return 2
    entries = entries[: args.limit] if args.limit > 0 else entries
    started = time.perf_counter()
    results: list[dict[str, Any]] = []

    def save(partial: dict[str, Any]) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            doc = {"data": str(args.data), "split": args.split, "images": len(entries), "seed": args.seed}
            args.json.write_text(json.dumps({**doc, "runs": [*results, partial]}, indent=2))

    for model in args.model:
        side = max(Evaluator(model, "none", 1, None).spec.input_size)
        split = load_split(entries, side)
        if args.examples and not results:
            examples(split, min(args.example_index, len(split) - 1), args.seed, args.examples)
        results.append(run_model(model, split, args, save))
    wall_s = time.perf_counter() - started
    if args.json:
        doc = {"data": str(args.data), "split": args.split, "images": len(entries), "seed": args.seed}
        args.json.write_text(json.dumps({**doc, "runs": results, "wall_s": round(wall_s, 1)}, indent=2))
    table = markdown(results)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    if args.plot:
        plot(results, args.plot)
    print(
        f"corruptions: {len(entries)} images, {len(results)} model(s), {wall_s:.0f} s wall", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
