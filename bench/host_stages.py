"""What the detection loop does around the model on the CPU, stage by stage, in one process.

    .venv/bin/python bench/host_stages.py                      # shipped model, auto backend, 720p frame
    .venv/bin/python bench/host_stages.py --model M.onnx --backend openvino --frames 1000

Every iteration runs, alternated so that drift of a shared VM hits each alike: the model alone on
a fixed input (the float network input and, for a backend with ``image_input``, the uint8
images), and one frame through the loop's host stages as ``Loop._process`` runs them: a fresh copy
of the frame (as a source delivers it), the batcher (letterbox, plus the float conversion when the
backend takes floats), the frame content checks (on the letterboxed copy), inference, decode + NMS.
Also the content checks on the full-size frame (what they cost before they moved to the letterboxed
copy). The frame is a real one (a sample drive with a stop sign, so decode has boxes to suppress),
scaled to ``--size``. Prints medians (ms) of the whole run and of its quarters, so drift shows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from stopsign.edge.backends.base import BackendOptions, resolve_model
from stopsign.edge.sources.sanity import FrameSanity, SanityOptions
from stopsign.edge.vision.frame import Frame
from stopsign.edge.vision.preprocess import FrameBatcher

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT / "samples" / "drives" / "day_approach" / "video.mp4"


def _frame(size: tuple[int, int]) -> np.ndarray:
    capture = cv2.VideoCapture(str(DRIVE))
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"host_stages: cannot read a frame of {DRIVE}")
    return cv2.resize(image, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "edge" / "assets" / "stopsign.onnx")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--frames", type=int, default=600, help="measured iterations (default 600)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    image = _frame((width, height))
    cls, path = resolve_model(args.backend, args.model)
    backend = cls()
    spec = backend.load(path, None, BackendOptions(threads=args.threads))
    batcher = FrameBatcher(spec, images=backend.image_input)
    sanity, full_frame_sanity = (
        FrameSanity(SanityOptions(check_identical=False), live=False) for _ in range(2)
    )
    h, w = spec.input_size
    rng = np.random.default_rng(0)
    float_input = rng.random((1, 3, h, w), dtype=np.float32)
    image_input = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {}

    def record(name: str, start: float) -> float:
        """Adds the time since ``start`` under ``name``; returns now, the next stage's start."""
        now = time.perf_counter()
        times.setdefault(name, []).append((now - start) * 1e3)
        return now

    for index in range(args.warmup + args.frames):
        if index == args.warmup:
            times.clear()
        start = time.perf_counter()
        backend.infer(float_input)
        start = record("model only, float32 input", start)
        if backend.image_input:
            backend.infer_images(image_input)
            record("model only, uint8 images", start)
        frame = Frame(index, index * 33_000_000, time.monotonic_ns(), image.copy())
        start = time.perf_counter()
        batch = batcher(frame.image)
        start = record("batcher (letterbox [+ float conversion])", start)
        sanity.check(frame, batcher.whole_image)
        start = record("content checks, letterboxed copy", start)
        raw = backend.infer_images(batch) if batcher.images else backend.infer(batch)
        start = record("inference in the loop", start)
        batcher.decode(raw, 0.25, spec.nms_iou)
        start = record("decode + NMS", start)
        full_frame_sanity.check(frame)
        record("content checks, full-size frame", start)
    backend.close()
    print(f"{backend.describe().get('backend')} {path.name}, {width}x{height} frame, {args.frames} iterations, "
          f"batcher input {'uint8 images' if batcher.images else 'float32'}")  # fmt: skip
    print("| stage | p50 ms | p50 per quarter of the run |")
    print("|---|---|---|")
    for name, values in times.items():
        quarters = ", ".join(f"{np.median(q):.3f}" for q in np.array_split(np.array(values), 4))
        print(f"| {name} | {np.median(values):.3f} | {quarters} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
