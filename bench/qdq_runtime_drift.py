"""Why an INT8 Q/DQ model's scores differ between ONNX Runtime and OpenVINO, and where it starts.

    .venv/bin/python bench/qdq_runtime_drift.py                     # the shipped INT8 file
    .venv/bin/python bench/qdq_runtime_drift.py --model M.int8.onnx --fp32 M.onnx --every 4 --layers 8

The reference is the Q/DQ graph's own meaning: ONNX Runtime with every graph optimisation off, so
each QuantizeLinear / DequantizeLinear runs as the float operator the ONNX spec defines. Against it,
on real frames of the sample drives (letterboxed as the runtime does):

1. final scores (objectness x class, anchors above 0.1 in any run): ONNX Runtime as the backends
   run it, OpenVINO through the project's backend (unsigned activations, f32 float layers), and
   the FP32 model, so the runtimes' difference can be read against what INT8 itself changes;
2. drift per layer: the graph cut after every ``--layers``-th activation DequantizeLinear, run on
   OpenVINO and on the reference, the difference counted in quantisation steps of that tensor
   (0: OpenVINO reproduces the graph exactly; 1: a value rounded to the neighbouring step).

Needs ``onnx``, ``onnxruntime`` and ``openvino``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from stopsign.edge.backends.base import BackendOptions, backend_class
from stopsign.edge.vision.letterbox import letterbox, to_network_input

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "edge" / "assets"
DRIVES = ("day_approach", "night_approach", "no_entry_and_yield", "occluded_approach")
SCORE_FLOOR = 0.1


def drive_frames(every: int) -> list[np.ndarray]:
    frames = []
    for name in DRIVES:
        capture = cv2.VideoCapture(str(ROOT / "samples" / "drives" / name / "video.mp4"))
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % every == 0:
                frames.append(image)
            index += 1
        capture.release()
    if not frames:
        raise SystemExit("qdq_runtime_drift: no frames read from samples/drives/*/video.mp4")
    return frames


def network_inputs(frames: list[np.ndarray], size: int) -> np.ndarray:
    """(N, 3, size, size) float32 network inputs, made as the runtime's float path makes them."""
    return np.concatenate([to_network_input(letterbox(f, (size, size))[0]) for f in frames])


def run_reference(path: Path, inputs: np.ndarray) -> np.ndarray:
    """The graph as the ONNX spec defines it: ONNX Runtime with every graph optimisation off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None]})[0] for x in inputs])


def run_backend(name: str, path: Path, inputs: np.ndarray) -> np.ndarray:
    """Raw outputs of the project's ``name`` backend, one input at a time."""
    backend = backend_class(name)()
    backend.load(path, None, BackendOptions(device="cpu", threads=2))
    try:
        return np.concatenate([backend.infer(np.ascontiguousarray(x[None])).copy() for x in inputs])
    finally:
        backend.close()


def scores(raw: np.ndarray) -> np.ndarray:
    return raw[..., 4] * raw[..., 5:].max(-1)


def score_table(runs: dict[str, np.ndarray]) -> list[str]:
    reference = scores(runs["reference"])
    all_scores = {k: scores(v) for k, v in runs.items()}
    mask = np.zeros(reference.shape, bool)
    for value in all_scores.values():
        mask |= value > SCORE_FLOOR
    lines = [
        f"Final scores against the reference, {int(mask.sum())} anchors above {SCORE_FLOOR} in some run:",
        "",
        "| run | median abs diff | p90 | max |",
        "|---|---|---|---|",
    ]
    for name, value in all_scores.items():
        if name == "reference":
            continue
        diff = np.abs(value - reference)[mask]
        lines.append(f"| {name} | {np.median(diff):.4f} | {np.percentile(diff, 90):.4f} | {diff.max():.4f} |")
    return lines


def layer_table(int8: Path, inputs: np.ndarray, stride: int) -> list[str]:
    import onnx
    import openvino as ov
    from onnx import numpy_helper

    from stopsign.edge.model.qdq_unsigned import unsigned_activations

    proto = onnx.load(str(int8))
    unsigned_activations(proto)  # as the backend reads it
    constants = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    producers = {out: node for node in proto.graph.node for out in node.output}
    cuts = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in constants]
    chosen = [c for i, c in enumerate(cuts) if i % stride == 0 or i == len(cuts) - 1]
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
    lines = [
        f"Drift per layer: OpenVINO against the reference at {len(chosen)} of {len(cuts)} activation "
        "DequantizeLinear outputs, in quantisation steps of that tensor:",
        "",
        "| # | tensor | quantised after | mean steps off | share off by >= 1 step | max steps |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="qdq-drift.") as folder:
        full, cut = Path(folder) / "full.onnx", Path(folder) / "cut.onnx"
        onnx.save(proto, str(full))
        input_name = proto.graph.input[0].name
        for node in chosen:
            onnx.utils.extract_model(str(full), str(cut), [input_name], [node.output[0]])
            reference = run_reference(cut, inputs)
            compiled = core.compile_model(core.read_model(str(cut)), "CPU", config)
            request = compiled.create_infer_request()
            got = np.concatenate([request.infer({0: x[None]})[0].copy() for x in inputs])
            steps = np.abs(got - reference) / float(constants[node.input[1]])
            quantize = producers.get(node.input[0])
            before = producers.get(quantize.input[0]) if quantize is not None else None
            after = before.op_type if before is not None else "input"
            lines.append(
                f"| {cuts.index(node)} | `{node.output[0].removesuffix('_DequantizeLinear_Output')}` | {after} | "
                f"{steps.mean():.4f} | {(steps >= 0.5).mean():.4f} | {steps.max():.0f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ASSETS / "stopsign.int8.onnx", help="INT8 Q/DQ ONNX")
    parser.add_argument("--fp32", type=Path, default=ASSETS / "stopsign.onnx", help="its FP32 ONNX")
    parser.add_argument(
        "--every", type=int, default=4, help="every Nth frame of each sample drive (default 4)"
    )
    parser.add_argument("--layers", type=int, default=4, help="cut after every Nth activation DQ (default 4)")
    parser.add_argument("--size", type=int, default=416, help="network input size (default 416)")
    args = parser.parse_args(argv)
    inputs = network_inputs(drive_frames(args.every), args.size)
    print(f"{len(inputs)} frames of {len(DRIVES)} sample drives, {args.model.name}\n")
    runs = {
        "reference": run_reference(args.model, inputs),
        "onnxruntime INT8 (the project's backend)": run_backend("onnxruntime", args.model, inputs),
        "openvino INT8 (the project's backend)": run_backend("openvino", args.model, inputs),
        "onnxruntime FP32 (the project's backend)": run_backend("onnxruntime", args.fp32, inputs),
    }
    print("\n".join(score_table(runs)) + "\n")
    print("\n".join(layer_table(args.model, inputs, args.layers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
