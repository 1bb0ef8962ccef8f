"""Torch CUDA backend versus ONNX Runtime CPU: agreement and timing (run on a CUDA machine).

    python bench/gpu_backends.py --weights CKPT_DIR --out OUT_DIR [--sizes 416 640] [--frames 300]
    python bench/gpu_backends.py --weights CKPT_DIR --out OUT_DIR --cpu-smoke     # plumbing check on a CPU

For each input size: exports the checkpoint to ONNX, runs the same letterboxed frames through
ONNX Runtime (CPU, FP32) and the torch backend (FP32 and FP16; eager and CUDA graph), checks that
the detections after NMS agree (boxes within 1e-2 of the input size in FP32, the same detections
in FP16), and times model-only (``infer``) and end-to-end (letterbox + infer + decode + NMS) per
frame with warm-up excluded. Needs no GStreamer and no TensorRT. Writes ``OUT/gpu_backends.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stopsign.edge.backends.base import BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.backends.torch import TorchBackend
from stopsign.edge.pipeline import Preprocessor
from stopsign.edge.postprocess import box_iou, decode_yolov5
from stopsign.export.onnx_export import export_checkpoint


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """720p frames with a red octagon of varying size and place (the model sees something sign-like)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = rng.integers(40, 200, (720, 1280, 3), dtype=np.uint8)
        r, cx, cy = int(rng.integers(15, 200)), int(rng.integers(200, 1080)), int(rng.integers(200, 520))
        angles = np.deg2rad(22.5 + 45 * np.arange(8))
        cv2.fillPoly(
            image,
            [np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).astype(np.int32)],
            (30, 30, 200),
        )
        out.append(image)
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        k: round(float(np.percentile(arr, p)), 4)
        for k, p in (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
    }


def run_backend(backend: Any, spec: Any, images: list[np.ndarray], warmup: int, cuda: bool) -> dict[str, Any]:
    pre = Preprocessor(spec)
    model_ms, e2e_ms, detections = [], [], []
    for i, image in enumerate(images):
        t0 = time.perf_counter()
        x, transform = pre(image)
        t1 = time.perf_counter()
        raw = backend.infer(x)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        dets = decode_yolov5(raw, 0.25, spec.nms_iou, transform)
        t3 = time.perf_counter()
        detections.append(dets)
        if i >= warmup:
            model_ms.append((t2 - t1) * 1e3)
            e2e_ms.append((t3 - t0) * 1e3)
    return {"model_ms": percentiles(model_ms), "e2e_ms": percentiles(e2e_ms), "detections": detections}


def agreement(reference: list, other: list, size: int) -> dict[str, Any]:
    """Worst box error (fraction of the input size) over matched detections, and count mismatches."""
    worst, mismatched = 0.0, 0
    for a, b in zip(reference, other):
        if len(a) != len(b):
            mismatched += 1
            continue
        if len(a):
            iou = box_iou(a.xyxy, b.xyxy)
            match = iou.argmax(axis=1)
            worst = max(worst, float(np.abs(a.xyxy - b.xyxy[match]).max()) / size)
    return {"max_box_error": round(worst, 6), "frames_with_different_counts": mismatched}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, required=True, help="checkpoint folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[416, 640])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="run on the CPU with few frames (plumbing only)"
    )
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda and not args.cpu_smoke:
        raise SystemExit("gpu_backends.py: no CUDA GPU here; use --cpu-smoke to check the plumbing on a CPU")
    n, warmup = (12, 2) if args.cpu_smoke else (args.frames, args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    images = frames(n)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "gpu": torch.cuda.get_device_name(0) if cuda else None,
                    "torch": torch.__version__, "cuda": torch.version.cuda},
        "frames": n, "warmup": warmup, "cpu_smoke": args.cpu_smoke, "runs": [],
    }  # fmt: skip
    for size in args.sizes:
        onnx_path = export_checkpoint(args.weights, args.out / f"model{size}.onnx", size)
        ort = OnnxRuntimeBackend()
        spec = ort.load(onnx_path, None, BackendOptions(device="cpu"))
        reference = run_backend(ort, spec, images, warmup, cuda=False)
        report["runs"].append({"backend": "onnxruntime-cpu", "precision": "fp32", "img": size, "graph": False,
                               "model_ms": reference["model_ms"], "e2e_ms": reference["e2e_ms"]})  # fmt: skip
        variants = (
            [(False, False)] if not cuda else [(False, False), (False, True), (True, False), (True, True)]
        )
        for half, graph in variants:
            backend = TorchBackend(cuda_graph=graph, half=half)
            backend.load(args.weights, spec, BackendOptions(device="cuda" if cuda else "cpu"))
            result = run_backend(backend, spec, images, warmup, cuda)
            desc = backend.describe()
            report["runs"].append({
                "backend": f"torch-{'cuda' if cuda else 'cpu'}", "precision": desc["precision"], "img": size,
                "graph": desc["cuda_graph"], "model_ms": result["model_ms"], "e2e_ms": result["e2e_ms"],
                "agreement_vs_onnxruntime": agreement(reference["detections"], result["detections"], size),
            })  # fmt: skip
            backend.close()
    (args.out / "gpu_backends.json").write_text(json.dumps(report, indent=2))
    for run in report["runs"]:
        print(f"{run['backend']:>16} {run['precision']} {run['img']} graph={run['graph']!s:5} "
              f"model p50 {run['model_ms']['p50']:.3f} ms  e2e p50 {run['e2e_ms']['p50']:.3f} ms  "
              f"{run.get('agreement_vs_onnxruntime', '')}")  # fmt: skip


if __name__ == "__main__":
    main()
