"""``edge-export``: checkpoint -> ONNX (``onnx``) and ONNX -> TensorRT engine (``engine``).

Examples::

    edge-export onnx --weights runs/best --img 416 --out models/stop.onnx
    edge-export onnx --weights runs/best --img 416 --half --out models/stop.fp16.onnx
    edge-export onnx --weights runs/best --img 416 --half --nms --out models/stop.nms.onnx   # TensorRT only
    edge-export engine models/stop.fp16.onnx --precision fp16 --timing-cache trt.cache --out models/stop.engine
    edge-export engine --if-stale --out models/stop.engine        # on the car after a JetPack update
    edge-export dynamic-batch edge/assets/stopsign.onnx --out stop.dyn.onnx   # batch axis for tiles
    edge-export engine stop.dyn.onnx --batch 3 --out stop.engine  # whole frame + 2 tiles per call
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from stopsign.edge.model.onnx_meta import onnx_sha256, read_spec_from_onnx


def _img_size(text: str) -> int | tuple[int, int]:
    parts = [p for p in text.replace("x", ",").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--img must be N or H,W in pixels, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError(f"--img must be N or H,W in pixels, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    onnx = sub.add_parser("onnx", help="checkpoint folder -> ONNX with the ModelSpec in its metadata")
    onnx.add_argument("--weights", required=True, type=Path, help="checkpoint folder (edge-train output)")
    onnx.add_argument(
        "--img",
        type=_img_size,
        default=None,
        help="input size in pixels: N or H,W (default: the checkpoint's own, i.e. its training size or "
        "a Darknet cfg's width/height)",
    )
    batch = onnx.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    batch.add_argument("--dynamic", action="store_true", help="symbolic batch axis")
    onnx.add_argument("--half", action="store_true", help="FP16 weights and compute, float32 input/output")
    onnx.add_argument(
        "--nms", action="store_true", help="append TensorRT's EfficientNMS_TRT (TensorRT-only model)"
    )
    onnx.add_argument(
        "--nms-conf", type=float, default=0.25, help="EfficientNMS score threshold (default 0.25)"
    )
    onnx.add_argument(
        "--nms-iou", type=float, default=None, help="EfficientNMS IoU threshold (default: spec nms_iou)"
    )
    onnx.add_argument(
        "--nms-max", type=int, default=100, help="EfficientNMS detections per image (default 100)"
    )
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default 17)")
    onnx.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    onnx.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    onnx.add_argument("--out", required=True, type=Path, help="output .onnx")

    dynamic = sub.add_parser(
        "dynamic-batch", help="ONNX with a fixed batch of 1 -> the same model with a dynamic batch axis"
    )
    dynamic.add_argument("onnx", type=Path, help="source ONNX (e.g. edge/assets/stopsign.onnx)")
    dynamic.add_argument("--out", required=True, type=Path, help="output .onnx")

    engine = sub.add_parser("engine", help="ONNX -> TensorRT engine + .engine.json sidecar (needs TensorRT)")
    engine.add_argument(
        "onnx", nargs="?", type=Path, help="source ONNX (with --if-stale: default from the sidecar)"
    )
    engine.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None, help="default fp16")
    engine.add_argument("--calib", type=Path, help="calibration image folder (TensorRT 10 implicit INT8)")
    engine.add_argument("--calib-cache", type=Path, help="calibration cache file (TensorRT 10 implicit INT8)")
    engine.add_argument(
        "--calib-algorithm",
        choices=("entropy2", "minmax"),
        default="entropy2",
        help="legacy TensorRT calibrator for --calib (default entropy2)",
    )
    engine.add_argument("--workspace", type=int, default=1024, help="builder workspace in MiB (default 1024)")
    engine.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file, read and updated")
    batches = engine.add_mutually_exclusive_group()
    batches.add_argument("--batch", type=int, metavar="N",
                         help="batch the engine is tuned for (whole frame + tiles: 1 + tiles); profile 1..N, "
                              "needs a dynamic-batch ONNX (edge-export onnx --dynamic)")  # fmt: skip
    batches.add_argument("--batch-range", type=int, nargs=3, metavar=("MIN", "OPT", "MAX"), default=(1, 1, 8),
                         help="optimisation profile for a dynamic-batch ONNX (default 1 1 8)")  # fmt: skip
    engine.add_argument(
        "--if-stale", action="store_true", help="rebuild only when the engine does not fit this device"
    )
    engine.add_argument("--out", required=True, type=Path, help="output .engine (sidecar: <out>.json)")
    return parser


def _run_onnx(args: argparse.Namespace) -> int:
    from stopsign.export.efficient_nms import NmsOptions
    from stopsign.export.onnx_export import export_checkpoint

    nms = None
    if args.nms:
        iou = args.nms_iou
        if iou is None:
            from stopsign.train.checkpoint import load_checkpoint

            iou = load_checkpoint(args.weights).spec.nms_iou
        nms = NmsOptions(score_threshold=args.nms_conf, iou_threshold=iou, max_detections=args.nms_max)
    out = export_checkpoint(
        args.weights, args.out, args.img, batch=args.batch, dynamic=args.dynamic, half=args.half,
        simplify=not args.no_simplify, nms=nms, opset=args.opset, exporter=args.exporter,
    )  # fmt: skip
    spec = read_spec_from_onnx(out)
    import onnx

    ops = Counter(node.op_type for node in onnx.load(str(out)).graph.node)
    print(f"wrote {out}  sha256 {onnx_sha256(out)}")
    print(f"  input images {spec.input_size}  layout {spec.output_layout}  precision {spec.precision}")
    print(f"  {sum(ops.values())} nodes: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
    return 0


def _make_calibrator(args: argparse.Namespace) -> Any:
    if args.calib is None:
        return None
    from stopsign.calibration.errors import CalibrationError
    from stopsign.calibration.tensorrt_calibrator import make_calibrator

    try:
        return make_calibrator(args.calib_algorithm, args.onnx, args.calib, args.calib_cache)
    except CalibrationError as exc:
        raise SystemExit(f"edge-export: {exc}") from None


def _run_dynamic_batch(args: argparse.Namespace) -> int:
    from stopsign.export.dynamic_batch import convert_file

    out = convert_file(args.onnx, args.out)
    print(f"wrote {out}  sha256 {onnx_sha256(out)}  (batch axis: dynamic)")
    return 0


def check_batch_fits(onnx_path: Path, batch: int) -> None:
    """``--batch N`` needs an ONNX whose batch axis is dynamic, or fixed at N; else a clear error."""
    from stopsign.export.engine_plan import EngineBuildError, inspect_onnx

    if batch < 1:
        raise EngineBuildError(f"--batch {batch}: must be >= 1")
    fixed = inspect_onnx(onnx_path).input_shape[0]
    if fixed >= 0 and fixed != batch:
        raise EngineBuildError(
            f"--batch {batch}: {onnx_path} has a fixed batch of {fixed}; export it with a dynamic batch "
            "(edge-export onnx --dynamic, or edge-export dynamic-batch) to build a batch profile"
        )


def _run_engine(args: argparse.Namespace) -> int:
    from stopsign.export.tensorrt_build import EngineBuildOptions, build_engine, build_if_stale

    if args.onnx is None and not args.if_stale:
        print(
            "edge-export engine: name the ONNX to build from (or use --if-stale with an existing sidecar)",
            file=sys.stderr,
        )
        return 2
    low, opt, high = args.batch_range
    if args.batch is not None:
        low, opt, high = 1, args.batch, args.batch
        if args.onnx is not None:
            check_batch_fits(args.onnx, args.batch)
    options = EngineBuildOptions(
        precision=args.precision or "fp16", workspace_mb=args.workspace, timing_cache=args.timing_cache,
        calibrator=_make_calibrator(args), min_batch=low, opt_batch=opt, max_batch=high,
    )  # fmt: skip
    if args.if_stale:
        explicit = args.precision is not None or args.onnx is not None
        build_if_stale(args.out, options if explicit else None, args.onnx)
    else:
        build_engine(args.onnx, args.out, options)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from stopsign.edge.model.engine_sidecar import EngineSidecarError
    from stopsign.edge.model.spec import ModelSpecError
    from stopsign.export.engine_plan import EngineBuildError

    handled: tuple[type[Exception], ...] = (
        EngineBuildError,
        EngineSidecarError,
        ModelSpecError,
        OSError,
        ValueError,
    )
    try:
        if args.command == "onnx":
            from stopsign.export.onnx_export import ExportError
            from stopsign.train.checkpoint import CheckpointError

            handled = (*handled, ExportError, CheckpointError)
            return _run_onnx(args)
        if args.command == "dynamic-batch":
            return _run_dynamic_batch(args)
        from stopsign.export.tensorrt_build import TensorRTUnavailable

        handled = (*handled, TensorRTUnavailable)
        return _run_engine(args)
    except handled as exc:
        print(f"edge-export {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
