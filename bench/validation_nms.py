"""Decode + NMS time per image at validation settings (conf 0.001, 2,048 candidates, 300 kept).

    python bench/validation_nms.py                 # untrained yolov5n at 416: the worst case
    python bench/validation_nms.py --images 16 --repeats 3

An untrained model passes thousands of boxes at conf 0.001: the case that made per-epoch
validation slow. Times `decode_yolov5` on the model's real output, once with NMS row by row (what
runs above `MATRIX_NMS_MAX_BOXES`) and once forcing the full-matrix fixed point, and checks that
both keep the same boxes. Prints ms/image for each and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from stopsign.edge.vision import postprocess
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.train.model import build_model


def time_decode(raw: np.ndarray, repeats: int) -> tuple[float, list]:
    kept = [decode_yolov5(r, 0.001, 0.6, None, max_candidates=2048, max_detections=300) for r in raw]
    start = time.perf_counter()
    for _ in range(repeats):
        for r in raw:
            decode_yolov5(r, 0.001, 0.6, None, max_candidates=2048, max_detections=300)
    return (time.perf_counter() - start) / (repeats * len(raw)) * 1e3, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--img", type=int, default=416)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    with torch.no_grad():
        raw = model(torch.rand(args.images, 3, args.img, args.img))[0].numpy()
    rows_ms, rows_kept = time_decode(raw, args.repeats)
    default_limit = postprocess.MATRIX_NMS_MAX_BOXES
    postprocess.MATRIX_NMS_MAX_BOXES = 10**9  # force the full-matrix fixed point
    try:
        matrix_ms, matrix_kept = time_decode(raw, args.repeats)
    finally:
        postprocess.MATRIX_NMS_MAX_BOXES = default_limit
    same = all(np.array_equal(a.xyxy, b.xyxy) for a, b in zip(rows_kept, matrix_kept))
    print(f"row by row: {rows_ms:.1f} ms/image; full matrix: {matrix_ms:.1f} ms/image; same boxes: {same}")
    print(json.dumps({"img": args.img, "images": args.images, "rows_ms": round(rows_ms, 2),
                      "matrix_ms": round(matrix_ms, 2), "same": same}))  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
