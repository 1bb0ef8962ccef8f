"""List the real training images a model gets wrong, to repeat them in the next fine-tuning stage.

    python recipes/shipped_model/mine_hard.py DATA MODEL.onnx --out hard.txt [--conf 0.25]

Runs MODEL (ONNX Runtime, CPU) over every non-synthetic image in DATA's train.txt and writes the
ones with a false positive (a box scoring >= --conf that overlaps no stop sign by IoU 0.3) or a
miss (a stop sign with no box of IoU >= 0.5 scoring >= --conf), one per line, as listed in
train.txt. The validation list is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stopsign.edge.backends.base import BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.vision.letterbox import resize_for_spec, to_network_input
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.train.data.hard_examples import mine_hard_examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset folder with train.txt (canonical layout)")
    parser.add_argument("model", type=Path, help="ONNX model with its ModelSpec metadata")
    parser.add_argument("--out", type=Path, required=True, help="list of hard images to write")
    parser.add_argument("--conf", type=float, default=0.25, help="confidence of a counted box (default 0.25)")
    args = parser.parse_args(argv)

    backend = OnnxRuntimeBackend()
    spec = backend.load(args.model, None, BackendOptions())

    def detect(image: np.ndarray) -> np.ndarray:
        boxed, transform = resize_for_spec(image, spec)
        return decode_yolov5(backend.infer(to_network_input(boxed)), args.conf, spec.nms_iou, transform).xyxy

    lines = [line.strip() for line in (args.data / "train.txt").read_text().splitlines() if line.strip()]
    real = [line for line in lines if not Path(line).name.startswith("synth")]
    result = mine_hard_examples(args.data, real, detect, nc=len(spec.class_names))
    args.out.write_text("".join(f"{line}\n" for line in result.hard))
    print(f"{result.summary(len(real))} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
