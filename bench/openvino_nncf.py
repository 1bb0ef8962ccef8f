"""A CPU-specific INT8 for OpenVINO: NNCF post-training quantisation, accuracy and latency.

    pip install nncf        # not a project dependency: this is an experiment
    .venv/bin/python bench/openvino_nncf.py --data data/real --out out/nncf_int8.xml

Quantises the FP32 ONNX (the shipped one by default) with NNCF on ``--calib`` letterboxed training
images (never the validation split), the detection head (``model.24``) kept in float, writes the
OpenVINO IR, then evaluates it with the runtime's own preprocessing and decode on the validation
split: mAP@0.5, recall and confuser images firing at the operating threshold, and the median
``infer`` time over 100 calls with a latency hint on ``--threads`` threads. The FP32 file is
measured the same way (in f32) for comparison.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from stopsign.calibration.dataset import scan_data
from stopsign.calibration.metrics import ImageResult, summarize
from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.edge.vision.letterbox import resize_for_spec, to_network_input
from stopsign.edge.vision.preprocess import FrameBatcher
from stopsign.train.data.layout import yolo_to_xyxy

SHIPPED = Path(__file__).resolve().parents[1] / "edge" / "assets" / "stopsign.onnx"


def evaluate(core: object, model: object, data: Path, spec: object, threads: int, hint: str | None) -> str:
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    request = core.compile_model(model, "CPU", config).create_infer_request()  # type: ignore[attr-defined]
    batcher = FrameBatcher(spec)  # type: ignore[arg-type]
    results = []
    for entry in scan_data(data, "val"):
        image = cv2.imread(str(entry.path))
        request.get_input_tensor().data[...] = batcher(image)
        request.infer()
        found = batcher.decode(np.array(request.get_output_tensor(0).data), 0.001, spec.nms_iou)  # type: ignore[attr-defined]
        height, width = image.shape[:2]
        results.append(
            ImageResult(found.xyxy, found.score, yolo_to_xyxy(entry.boxes, width, height), entry.role)
        )
    metrics = summarize(results, spec.operating_threshold)  # type: ignore[attr-defined]
    times = []
    for _ in range(100):
        started = time.perf_counter()
        request.infer()
        times.append(time.perf_counter() - started)
    return (
        f"mAP@0.5 {metrics.map50:.4f}, recall {metrics.recall_at_threshold:.3f}, confuser boxes "
        f"{metrics.confuser_fp}/{metrics.confuser_images} images, infer p50 {1000 * np.median(times):.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--data", type=Path, required=True, help="data folder with train.txt and val.txt")
    parser.add_argument("--calib", type=int, default=300, help="calibration images from the training split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="the quantised OpenVINO IR (.xml)")
    args = parser.parse_args(argv)
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        print(f"openvino_nncf: needs openvino and nncf ({exc}); pip install nncf", file=sys.stderr)
        return 2
    spec = read_spec_from_onnx(args.model)
    entries = scan_data(args.data, "train")
    random.Random(0).shuffle(entries)
    calibration = []
    for entry in entries[: args.calib]:
        boxed, _ = resize_for_spec(cv2.imread(str(entry.path)), spec)
        calibration.append(to_network_input(boxed, spec.scale, spec.color_order == "RGB"))
    core = ov.Core()
    fp32 = core.read_model(str(args.model))
    fp32.reshape([1, 3, *spec.input_size])
    quantized = nncf.quantize(
        fp32, nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(patterns=[r".*/model\.24/.*"]),
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(args.out))
    print(f"FP32 (f32):            {evaluate(core, fp32, args.data, spec, args.threads, 'f32')}")
    print(f"FP32 (OpenVINO default): {evaluate(core, fp32, args.data, spec, args.threads, None)}")
    print(f"NNCF INT8 (head float): {evaluate(core, quantized, args.data, spec, args.threads, None)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
