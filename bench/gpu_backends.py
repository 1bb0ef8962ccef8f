"""Torch CUDA backend versus ONNX Runtime CPU: agreement and timing (for a CUDA machine).

    python bench/gpu_backends.py --weights CKPT_DIR --out OUT_DIR [--images DIR] [--sizes 416 640]
    python bench/gpu_backends.py --weights CKPT_DIR --out OUT_DIR --cpu-smoke   # plumbing check on a CPU

For each input size the checkpoint is exported to ONNX (no network, no GStreamer, no TensorRT
needed) and the same frames go through:

* reference: ONNX Runtime on the CPU, FP32: host letterbox + ``infer`` + ``decode_yolov5``;
* torch backend, FP32 and FP16, eager and CUDA graph (on ``--cpu-smoke``: FP32 eager on the CPU):
  - agreement, model path: the reference's host-letterboxed input through ``infer`` and the same
    host decode. FP32 must give the same boxes within ``--fp32-tol`` source-frame pixels (default
    1e-2); FP16 the same detections (same count, each matched at IoU >= 0.9, same class);
  - agreement, GPU path: ``detect`` (letterbox, decode and NMS on the GPU). Reported, not gated:
    its letterbox skips cv2's uint8 rounding, so boxes move by a fraction of a pixel;
  - model-only time: the forward on the device input (graph replay or eager), timed with
    ``torch.cuda.Event`` pairs (wall clock on the CPU);
  - end-to-end time: ``detect(frame)`` from a host uint8 frame to final boxes on the host
    (``time.perf_counter``: it ends in a synchronising copy), and the host path (cv2 letterbox +
    ``infer`` + numpy decode) for comparison.

Warm-up frames are excluded from timings. Writes ``OUT/gpu_backends.json`` and prints a Markdown
table. Exit status 1 when an agreement check fails or a variant errors (the JSON is still written).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stopsign.edge.backends.base import BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.backends.torch import TorchBackend
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.postprocess import box_iou, decode_yolov5
from stopsign.edge.vision.preprocess import Preprocessor
from stopsign.export.onnx_export import export_checkpoint

CONF = 0.25


def synthetic_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """720p frames with a red octagon of varying size and place (something sign-like)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = rng.integers(40, 200, (720, 1280, 3), dtype=np.uint8)
        r, cx, cy = int(rng.integers(15, 200)), int(rng.integers(200, 1080)), int(rng.integers(200, 520))
        angles = np.deg2rad(22.5 + 45 * np.arange(8))
        corners = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(image, [corners], (30, 30, 200))
        out.append(image)
    return out


def load_frames(folder: Path | None, n: int) -> tuple[list[np.ndarray], str]:
    """``n`` frames: the images in ``folder`` (cycled, all resized to 1280x720) or synthetic ones."""
    if folder is None:
        return synthetic_frames(n), "synthetic 1280x720"
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"gpu_backends.py: no .jpg/.png images under {folder}")
    images = []
    for path in paths[:n]:
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"gpu_backends.py: cannot read image {path}")
        images.append(cv2.resize(image, (1280, 720)))  # one source size: one frame graph
    return [images[i % len(images)] for i in range(n)], f"{len(images)} images from {folder}, 1280x720"


def stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        k: round(float(np.percentile(arr, p)), 4)
        for k, p in (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99))
    }


def compare(reference: list[Detections], other: list[Detections], box_tol: float | None) -> dict[str, Any]:
    """Per frame: same count, each reference box matched (IoU >= 0.9, same class); worst box error (px)."""
    worst, differing = 0.0, 0
    for a, b in zip(reference, other):
        if len(a) != len(b):
            differing += 1
            continue
        if len(a) == 0:
            continue
        iou = box_iou(a.xyxy, b.xyxy)
        match = iou.argmax(axis=1)
        if (iou.max(axis=1) < 0.9).any() or (a.class_id != b.class_id[match]).any():
            differing += 1
        worst = max(worst, float(np.abs(a.xyxy - b.xyxy[match]).max()))
    detections = sum(len(d) for d in reference)
    ok = differing == 0 and (box_tol is None or worst <= box_tol)
    return {"frames_differing": differing, "max_box_error_px": round(worst, 6), "reference_detections": detections,
            "box_tolerance_px": box_tol, "pass": ok}  # fmt: skip


def host_path(
    backend: Any, pre: Preprocessor, frames: list[np.ndarray], warmup: int
) -> tuple[list, list, list]:
    """(detections, model-only ms, end-to-end ms) through host letterbox + ``infer`` + numpy decode."""
    dets, model_ms, e2e_ms = [], [], []
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        x, transform = pre(frame)
        t1 = time.perf_counter()
        raw = backend.infer(x)
        t2 = time.perf_counter()
        dets.append(decode_yolov5(raw, CONF, pre.spec.nms_iou, transform))
        t3 = time.perf_counter()
        if i >= warmup:
            model_ms.append((t2 - t1) * 1e3)
            e2e_ms.append((t3 - t0) * 1e3)
    return dets, model_ms, e2e_ms


def model_only_ms(backend: TorchBackend, n: int, warmup: int, cuda: bool) -> list[float]:
    """The forward alone on the device input, n times after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + n):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            backend.forward()
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            backend.forward()
            elapsed = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times.append(elapsed)
    return times


def gpu_path(backend: TorchBackend, frames: list[np.ndarray], warmup: int) -> tuple[list, list]:
    dets, e2e_ms = [], []
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        dets.append(backend.detect(frame, CONF))  # ends with the boxes on the host: synchronised
        if i >= warmup:
            e2e_ms.append((time.perf_counter() - t0) * 1e3)
    return dets, e2e_ms


def torch_variant(args: argparse.Namespace, spec: Any, frames: list, half: bool, graph: bool, cuda: bool,
                  reference: list[Detections]) -> dict[str, Any]:  # fmt: skip
    backend = TorchBackend(cuda_graph=graph, half=half)
    backend.load(args.weights, spec, BackendOptions(device="cuda" if cuda else "cpu"))
    try:
        desc = backend.describe()
        host_dets, _, host_e2e = host_path(backend, Preprocessor(spec), frames, args.warmup)
        gpu_dets, gpu_e2e = gpu_path(backend, frames, args.warmup)
        model = model_only_ms(backend, len(frames) - args.warmup, args.warmup, cuda)
        return {
            "backend": f"torch-{'cuda' if cuda else 'cpu'}", "precision": desc["precision"], "graph": desc["cuda_graph"],
            "nms": desc["nms"], "model_ms": stats(model), "e2e_gpu_ms": stats(gpu_e2e), "e2e_host_ms": stats(host_e2e),
            "e2e_over_model_p50": round(float(np.median(gpu_e2e) / np.median(model)), 3),
            "agreement_model_path": compare(reference, host_dets, None if half else args.fp32_tol),
            "agreement_gpu_path": compare(reference, gpu_dets, None) | {"gated": False},
            # Frames the GPU path decoded the dynamic way (the fixed-shape decode in the graph was full).
            "fixed_decode_fallbacks": backend.fixed_decode_fallbacks,
            "frame_graph_error": backend.frame_graph_error,
        }  # fmt: skip
    finally:
        backend.close()


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | img | precision | graph | model p50 ms | e2e GPU-path p50 ms | e2e host-path p50 ms "
        "| e2e/model | FP agreement (model path) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['img']} | {r.get('precision', '')} | {r.get('graph', '')} "
                         f"| error: {r['error'][:60]} | | | | |")  # fmt: skip
            continue
        agree = r.get("agreement_model_path")
        agree_text = "reference" if agree is None else (
            f"{'pass' if agree['pass'] else 'FAIL'} (max {agree['max_box_error_px']} px, "
            f"{agree['frames_differing']} frames differ)")  # fmt: skip
        gpu = r.get("e2e_gpu_ms", {}).get("p50", "")
        lines.append(
            f"| {r['backend']} | {r['img']} | {r['precision']} | {r['graph']} | {r['model_ms']['p50']} | {gpu} "
            f"| {r['e2e_host_ms']['p50']} | {r.get('e2e_over_model_p50', '')} | {agree_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, required=True, help="checkpoint folder (spec.json + weights)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for gpu_backends.json")
    parser.add_argument("--images", type=Path, help="folder of .jpg/.png frames (default: synthetic frames)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[416, 640])
    parser.add_argument("--frames", type=int, default=300, help="frames per variant, warm-up included")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--fp32-tol", type=float, default=1e-2, help="FP32 box tolerance in source-frame pixels"
    )
    parser.add_argument("--cpu-smoke", action="store_true", help="CPU, FP32 eager, few frames: plumbing only")
    args = parser.parse_args(argv)
    if not (args.weights / "spec.json").is_file():
        raise SystemExit(f"gpu_backends.py: {args.weights} is not a checkpoint folder (no spec.json)")
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda and not args.cpu_smoke:
        raise SystemExit(
            "gpu_backends.py: torch sees no CUDA GPU here; use --cpu-smoke to check the plumbing"
        )
    if args.cpu_smoke:
        args.frames, args.warmup = min(args.frames, 12), min(args.warmup, 2)
    if args.frames <= args.warmup:
        raise SystemExit(f"gpu_backends.py: --frames {args.frames} must exceed --warmup {args.warmup}")
    args.out.mkdir(parents=True, exist_ok=True)
    frames, frames_text = load_frames(args.images, args.frames)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None},
        "weights": str(args.weights), "frames": args.frames, "warmup": args.warmup, "source": frames_text,
        "conf": CONF, "cpu_smoke": args.cpu_smoke, "runs": [],
    }  # fmt: skip
    simplify = importlib.util.find_spec("onnxslim") is not None
    variants = [(False, False), (False, True), (True, False), (True, True)] if cuda else [(False, False)]
    failed = False
    for size in args.sizes:
        onnx_path = export_checkpoint(args.weights, args.out / f"model{size}.onnx", size, simplify=simplify)
        ort = OnnxRuntimeBackend()
        spec = ort.load(onnx_path, None, BackendOptions(device="cpu"))
        reference, ort_model, ort_e2e = host_path(ort, Preprocessor(spec), frames, args.warmup)
        report["runs"].append({"backend": "onnxruntime-cpu", "img": size, "precision": "fp32", "graph": False,
                               "model_ms": stats(ort_model), "e2e_host_ms": stats(ort_e2e)})  # fmt: skip
        for half, graph in variants:
            label = {"backend": "torch-cuda" if cuda else "torch-cpu", "img": size,
                     "precision": "fp16" if half else "fp32", "graph": graph}  # fmt: skip
            try:
                run = torch_variant(args, spec, frames, half, graph, cuda, reference) | {"img": size}
                failed |= not run["agreement_model_path"]["pass"]
            except Exception as exc:  # one broken variant must not lose the others' numbers
                run = label | {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                failed = True
            report["runs"].append(run)
            print(markdown([run]).splitlines()[-1], flush=True)
    (args.out / "gpu_backends.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{frames_text}, {args.frames - args.warmup} timed frames after {args.warmup} warm-up\n")
    print(markdown(report["runs"]))
    print(f"\nwrote {args.out / 'gpu_backends.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
