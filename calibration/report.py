"""``edge-calibrate report``: FP32 vs FP16 vs INT8 Q/DQ on one validation set, on a CPU backend.

``--backend`` picks the runtime (ONNX Runtime by default, or OpenVINO: it reads Q/DQ as real
INT8, where ONNX Runtime's CPU provider runs much of it as float), through the same backend
classes ``edge-detect`` uses.

Every model is run through the runtime's own pipeline (letterbox, ``to_network_input``,
``decode_yolov5``), so the numbers are what the car would compute, minus TensorRT's kernels.
Latency is the median (and p90) of single-image ``session.run`` calls after warm-up; on CPU the
INT8 Q/DQ graph runs partly as float (DequantizeLinear then float Conv), so its CPU latency says
nothing about TensorRT INT8 speed - that is measured with ``edge-bench`` on the device.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import onnx
from tqdm import tqdm

from stopsign.calibration.dataset import ImageEntry, scan_data
from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.metrics import DetectionMetrics, ImageResult, summarize
from stopsign.calibration.qdq import load_model_and_spec
from stopsign.edge.model.artifacts import atomic_write_text, sha256_file
from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.edge.model.spec import ModelSpec, ModelSpecError
from stopsign.edge.vision.letterbox import resize_for_spec, to_network_input
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.train.data.layout import yolo_to_xyxy

# Low threshold for AP (the whole precision-recall curve); the operating threshold comes from the spec.
AP_CONF = 0.001


@dataclass
class PrecisionRow:
    """One model of the report."""

    label: str
    path: Path
    spec: ModelSpec
    metrics: DetectionMetrics
    latency_ms_p50: float
    latency_ms_p90: float
    backend: str = "onnxruntime"


def evaluate_model(
    path: Path, entries: list[ImageEntry], threshold: float, label: str, backend: str = "onnxruntime"
) -> PrecisionRow:
    """Run ``path`` on ``backend`` (CPU) on every labelled entry and summarise at ``threshold``."""
    from stopsign.edge.backends.base import BackendError, BackendOptions, resolve_backend

    is_ir = path.suffix.lower() == ".xml"  # an OpenVINO IR keeps its spec where the backend reads it
    try:
        spec = None if is_ir else read_spec_from_onnx(path)
    except (ModelSpecError, FileNotFoundError) as exc:
        raise CalibrationError(str(exc)) from None
    try:
        runner = resolve_backend(backend, path)()
        spec = runner.load(path, spec, BackendOptions(device="cpu"))
    except BackendError as exc:
        raise CalibrationError(f"--backend {backend}: {exc}") from None
    buffer = np.empty((*spec.input_size, 3), dtype=np.uint8)
    results: list[ImageResult] = []
    example = None
    try:
        for entry in tqdm(entries, desc=f"eval {label} ({backend})", unit="img"):
            image = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
            if image is None:
                raise CalibrationError(f"{entry.path}: unreadable validation image")
            boxed, transform = resize_for_spec(image, spec, out=buffer)
            tensor = to_network_input(boxed, spec.scale, rgb=spec.color_order == "RGB")
            example = tensor.copy() if example is None else example
            raw = runner.infer(tensor)
            dets = decode_yolov5(raw, AP_CONF, spec.nms_iou, transform)
            height, width = image.shape[:2]
            results.append(
                ImageResult(dets.xyxy, dets.score, yolo_to_xyxy(entry.boxes, width, height), entry.role)
            )
        assert example is not None  # entries is non-empty (checked by the caller)
        p50, p90 = latency_ms(lambda: runner.infer(example))
    finally:
        runner.close()
    return PrecisionRow(label, path, spec, summarize(results, threshold), p50, p90, backend)


def latency_ms(run: Callable[[], object], warmup: int = 5, runs: int = 30) -> tuple[float, float]:
    """Median and p90 wall time (ms) of ``run()`` (one (1, 3, H, W) inference)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def float_convs(int8_path: Path) -> list[str]:
    """Conv nodes of a Q/DQ model whose input is not fed by a DequantizeLinear (left in float)."""
    graph = onnx.load(str(int8_path), load_external_data=False).graph
    dq_outputs = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return [node.name for node in graph.node if node.op_type == "Conv" and node.input[0] not in dq_outputs]


def build_report(
    model: Path,
    int8: list[Path],
    data: Path,
    fp16: Path | None = None,
    split: str | None = "val",
    limit: int | None = None,
    backend: str = "onnxruntime",
) -> tuple[str, list[PrecisionRow]]:
    """Evaluate every model on ``data`` with ``backend`` and return (markdown, rows)."""
    _, fp32_spec = load_model_and_spec(model)  # also refuses a model without ModelSpec
    entries = [e for e in scan_data(data, split) if e.labelled]
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise CalibrationError(f"{data}: no labelled images to evaluate on (need YOLO label files)")
    threshold = fp32_spec.operating_threshold
    models = [("FP32", model)] + ([("FP16", fp16)] if fp16 else [])
    models += [(_int8_label(p), p) for p in int8]
    rows = [evaluate_model(path, entries, threshold, label, backend) for label, path in models]
    for row in rows[1:]:
        if tuple(row.spec.input_size) != tuple(fp32_spec.input_size):
            raise CalibrationError(
                f"{row.path}: input size {row.spec.input_size} differs from {model}'s {fp32_spec.input_size}"
            )
    return _markdown(rows, data, threshold, int8), rows


def write_report(out: Path, text: str) -> Path:
    return atomic_write_text(out, text)


def _int8_label(path: Path) -> str:
    if path.suffix.lower() == ".xml":  # the sidecar says how it was made (edge-calibrate openvino)
        try:
            method = json.loads(path.with_suffix(".json").read_text())["quantization"]["method"]
        except (OSError, ValueError, KeyError, TypeError):
            method = "unknown origin"
        return f"INT8 OpenVINO IR ({method})"
    return f"INT8 Q/DQ ({_method_of(path)})"


def _method_of(path: Path) -> str:
    for method in ("minmax", "entropy", "percentile"):
        if method in path.name:
            return method
    return path.stem


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN check without math import


def _markdown(rows: list[PrecisionRow], data: Path, threshold: float, int8: list[Path]) -> str:
    base = rows[0].metrics
    lines = [
        "| model | mAP@0.5 | Δ vs FP32 (points) | mAP@0.5:0.95 | recall @ thr | precision @ thr "
        f"| FP on confusers | FP on negatives | {rows[0].backend} CPU p50 ms | p90 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row.metrics
        delta = (m.map50 - base.map50) * 100
        lines.append(
            f"| {row.label} (`{row.path.name}`) | {_fmt(m.map50)} | {delta:+.2f} | {_fmt(m.map50_95)} "
            f"| {_fmt(m.recall_at_threshold)} | {_fmt(m.precision_at_threshold)} "
            f"| {m.confuser_fp} on {m.confuser_images} img | {m.negative_fp} "
            f"| {row.latency_ms_p50:.1f} | {row.latency_ms_p90:.1f} |"
        )
    verdicts = []
    for row, path in zip(rows[-len(int8) :], int8):
        drop = (base.map50 - row.metrics.map50) * 100
        status = "meets" if drop <= 1.0 else "MISSES"
        verdict = (
            f"- {row.label}: {abs(drop):.2f} points {'below' if drop > 0 else 'above'} FP32 mAP@0.5, "
            f"{status} the 1.0-point goal. "
        )
        if path.suffix.lower() != ".onnx":  # an OpenVINO IR: NNCF chose the placement (its sidecar says how)
            verdicts.append(verdict + f"Quantizer placement by NNCF: see `{path.with_suffix('.json').name}`.")
            continue
        floats = float_convs(path)
        verdicts.append(
            verdict + f"Convs left in float ({len(floats)}): {', '.join(f'`{n}`' for n in floats) or 'none'} "
            "(the Detect head: its outputs are box pixels and thresholded scores; plus any --keep-float)."
        )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"Measured {stamp} on `{data}` ({base.n_images} labelled images, {base.n_gt} stop signs), "
        f"operating threshold {threshold:g} (FP32 ModelSpec), IoU 0.5 for recall/FP.",
        f"FP32 model `{rows[0].path}` sha256 `{sha256_file(rows[0].path)[:16]}`.",
        "",
    ]
    return "\n".join([*header, *lines, "", *verdicts, ""])
