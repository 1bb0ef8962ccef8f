"""A PNG grid of the shipped model's successes and failures on validation images (for docs/model.md).

    python recipes/shipped_model/examples_grid.py DATASET MODEL.onnx --out docs/model_examples.png

Green: labelled stop signs; blue: detections at the operating threshold (score printed). Rows:
found signs, missed signs, false detections on confusers, clean confusers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stopsign.edge.backends.base import BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.vision.postprocess import box_iou, decode_yolov5
from stopsign.edge.vision.preprocess import Preprocessor
from stopsign.train.data import layout
from stopsign.train.data.labels import parse_label_text, to_array

TILE = 256
PER_ROW = 6


def _tile(image: np.ndarray, gt: np.ndarray, dets, caption: str) -> np.ndarray:
    canvas = image.copy()
    for box in gt.astype(int):
        cv2.rectangle(canvas, tuple(box[:2]), tuple(box[2:]), (0, 200, 0), 3)
    for box, score in zip(dets.xyxy.astype(int), dets.score):
        cv2.rectangle(canvas, tuple(box[:2]), tuple(box[2:]), (255, 120, 0), 2)
        cv2.putText(
            canvas,
            f"{score:.2f}",
            (box[0], max(box[1] - 4, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7,
            (255, 120, 0),
            2,
        )
    scale = TILE / max(canvas.shape[:2])
    canvas = cv2.resize(canvas, (round(canvas.shape[1] * scale), round(canvas.shape[0] * scale)))
    tile = np.full((TILE + 18, TILE, 3), 255, np.uint8)
    tile[: canvas.shape[0], : canvas.shape[1]] = canvas
    cv2.putText(tile, caption[:40], (2, TILE + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/model_examples.png"))
    args = parser.parse_args()
    backend = OnnxRuntimeBackend()
    spec = backend.load(args.model, None, BackendOptions(device="cpu"))
    preprocess = Preprocessor(spec)
    records = layout.read_sources(args.dataset)
    rows: dict[str, list[np.ndarray]] = {"found": [], "missed": [], "false": [], "clean": []}
    for entry in layout.read_list(args.dataset, layout.VAL_LIST):
        path = args.dataset / entry
        image = cv2.imread(str(path))
        label = layout.label_path_for(path)
        _, norm = (
            to_array(parse_label_text(label.read_text(), 1)[0])
            if label.is_file()
            else (None, np.zeros((0, 4)))
        )
        gt = layout.yolo_to_xyxy(norm, image.shape[1], image.shape[0]).astype(np.float32)
        network_input, transform = preprocess(image)
        dets = decode_yolov5(backend.infer(network_input), spec.operating_threshold, spec.nms_iou, transform)
        record = records.get(path.name)
        caption = f"{record.source if record else ''} {path.name}"
        if len(gt):
            hit = len(dets) and (box_iou(gt, dets.xyxy).max(axis=1) >= 0.5).all()
            kind = "found" if hit else "missed"
        else:
            kind = "false" if len(dets) else "clean"
        if len(rows[kind]) < PER_ROW:
            rows[kind].append(_tile(image, gt, dets, caption))
    blank = np.full((TILE + 18, TILE, 3), 255, np.uint8)
    grid = [np.hstack(tiles + [blank] * (PER_ROW - len(tiles))) for tiles in rows.values()]
    cv2.imwrite(str(args.out), np.vstack(grid))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in rows.items()))


if __name__ == "__main__":
    main()
