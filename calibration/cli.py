"""``edge-calibrate``: calibration set, Q/DQ INT8 ONNX, precision report, legacy cache inspection.

    edge-calibrate select DATA --n 500 --img 416 --out calib/
    edge-calibrate qdq M.onnx --calib calib/ --method entropy --out M.int8.onnx [--keep-float NODE ...]
    edge-calibrate openvino M.onnx --int8 M.int8.onnx [--out M.openvino.xml]   # CPU INT8 IR
    edge-calibrate openvino M.onnx --calib calib/                              # the same by NNCF
    edge-calibrate report --model M.onnx --int8 M.int8.onnx [--fp16 M.fp16.onnx] --data DATA --out docs/int8.md
    edge-calibrate legacy-cache info CACHE [--model M.onnx]

Exit status: 0 success, 2 bad input (the message names the file or value at fault).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stopsign.calibration.errors import CalibrationError
from stopsign.edge.model.spec import ModelSpecError

REPORT_BEGIN = "<!-- edge-calibrate report: begin -->"
REPORT_END = "<!-- edge-calibrate report: end -->"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-calibrate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sel = sub.add_parser("select", help="pick a stratified calibration set and letterbox it")
    sel.add_argument("data", type=Path, help="canonical dataset folder or a plain folder of images")
    sel.add_argument("--n", type=int, default=500, help="images to pick (default 500)")
    sel.add_argument("--out", type=Path, required=True, help="output folder")
    size = sel.add_mutually_exclusive_group()
    size.add_argument("--img", type=int, nargs="+", metavar="PX", help="input size: H [W] (default 416)")
    size.add_argument(
        "--model", type=Path, help="take input size, pad value and resize mode from this ONNX's ModelSpec"
    )
    sel.add_argument("--seed", type=int, default=0)
    sel.add_argument(
        "--skip-unreadable", action="store_true", help="skip undecodable images instead of failing"
    )

    qdq = sub.add_parser("qdq", help="static Q/DQ INT8 quantization for TensorRT")
    qdq.add_argument("model", type=Path, help="FP32 ONNX exported by edge-export (with ModelSpec)")
    qdq.add_argument("--calib", type=Path, required=True, help="calibration folder (edge-calibrate select)")
    qdq.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    qdq.add_argument("--out", type=Path, required=True)
    qdq.add_argument(
        "--keep-float", nargs="+", default=[], metavar="NODE", help="more nodes (names or globs) in float"
    )
    qdq.add_argument("--quantize-head", action="store_true", help="also quantize the Detect head convs")
    qdq.add_argument("--op-types", default="Conv", help="comma-separated op types to quantize (default Conv)")
    qdq.add_argument("--chunk", type=int, default=16, help="images per calibration chunk (memory bound)")
    qdq.add_argument(
        "--max-images", type=int, help="cap (default: all for minmax, 256 for entropy/percentile)"
    )
    qdq.add_argument("--percentile", type=float, default=99.999)

    ovq = sub.add_parser("openvino", help="CPU INT8 for OpenVINO (NNCF post-training quantisation)")
    ovq.add_argument("model", type=Path, help="FP32 ONNX exported by edge-export (with ModelSpec)")
    how = ovq.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--int8", type=Path, help="the model's calibrated Q/DQ file (edge-calibrate qdq): recommended"
    )
    how.add_argument(
        "--calib", type=Path, help="calibration folder (edge-calibrate select): NNCF quantisation"
    )
    ovq.add_argument("--out", type=Path, help="the IR .xml (default: M.openvino.xml beside M.onnx)")
    ovq.add_argument("--preset", choices=("mixed", "performance"), default="mixed",
                     help="mixed: asymmetric activations (default, kept accuracy); performance: symmetric")  # fmt: skip
    ovq.add_argument("--fast-bias-correction", action="store_true",
                     help="NNCF's fast bias correction (quicker; lost 1.2-1.4 points mAP@0.5 on the shipped model)")  # fmt: skip
    ovq.add_argument("--max-images", type=int, help="use the first N calibration images (default all)")
    ovq.add_argument("--keep-head-float", action="store_true", help="leave the Detect head convs in float")

    rep = sub.add_parser("report", help="FP32 vs FP16 vs INT8 accuracy and CPU latency")
    rep.add_argument("--model", type=Path, required=True, help="FP32 ONNX")
    rep.add_argument("--int8", type=Path, nargs="+", required=True, help="one or more Q/DQ models")
    rep.add_argument("--fp16", type=Path)
    rep.add_argument("--data", type=Path, required=True, help="validation data (val.txt of a canonical set)")
    rep.add_argument("--split", default="val", help="split list to use when present (default val)")
    rep.add_argument("--limit", type=int, help="evaluate the first N images only")
    rep.add_argument("--out", type=Path, default=Path("docs/int8.md"))
    rep.add_argument(
        "--backend",
        default="onnxruntime",
        help="CPU runtime: onnxruntime (default) or openvino (reads Q/DQ as INT8)",
    )

    legacy = sub.add_parser("legacy-cache", help="TensorRT (<= 10) calibration caches")
    legacy_sub = legacy.add_subparsers(dest="legacy_command", required=True)
    info = legacy_sub.add_parser("info", help="show a cache's sidecar and check it against a model")
    info.add_argument("cache", type=Path)
    info.add_argument("--model", type=Path, help="ONNX model the cache should belong to")
    info.add_argument("--algorithm", choices=("entropy2", "minmax"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "select":
            return _select(args)
        if args.command == "qdq":
            return _qdq(args)
        if args.command == "openvino":
            return _openvino(args)
        if args.command == "report":
            return _report(args)
        return _legacy_info(args)
    except (CalibrationError, ModelSpecError) as exc:
        print(f"edge-calibrate: error: {exc}", file=sys.stderr)
        return 2


def _openvino(args: argparse.Namespace) -> int:
    from stopsign.calibration.openvino_int8 import OpenVinoInt8Options, ir_from_qdq, quantize_openvino

    if args.int8 is not None:
        result = ir_from_qdq(args.model, args.int8, args.out)
        how = f"from {args.int8} (activations as unsigned INT8)"
    else:
        options = OpenVinoInt8Options(
            preset=args.preset,
            fast_bias_correction=args.fast_bias_correction,
            max_images=args.max_images,
            keep_head_float=args.keep_head_float,
        )
        result = quantize_openvino(args.model, args.calib, args.out, options)
        how = f"by NNCF ({options.preset}, {result.n_images} images)"
    print(
        f"wrote {result.xml} (+ .bin) and {result.sidecar.name} {how} in {result.seconds:.1f} s. Check it: "
        f"edge-calibrate report --backend openvino --model {args.model} --int8 {result.xml} --data DATA"
    )
    return 0


def _select(args: argparse.Namespace) -> int:
    from stopsign.calibration.select import SelectOptions, select_calibration_set

    if args.model is not None:
        from stopsign.calibration.qdq import load_model_and_spec

        _, spec = load_model_and_spec(args.model)
        size, pad, resize = spec.input_size, spec.pad_value, spec.resize
    else:
        img = args.img or [416]
        if len(img) > 2:
            raise CalibrationError(f"--img takes H or H W, got {img}")
        size, pad, resize = (img[0], img[-1]), 114, "letterbox"
    options = SelectOptions(
        n=args.n,
        input_size=size,
        pad_value=pad,
        resize=resize,
        seed=args.seed,
        skip_unreadable=args.skip_unreadable,
    )
    result = select_calibration_set(args.data, args.out, options)
    print(f"picked {len(result.picked)} of {result.available} images into {result.out}")
    for stratum, count in result.strata_picked.items():
        print(f"  {stratum}: {count} of {result.strata_available[stratum]}")
    if result.unreadable:
        print(f"skipped {len(result.unreadable)} unreadable image(s) (listed in the manifest)")
    return 0


def _qdq(args: argparse.Namespace) -> int:
    from stopsign.calibration.qdq import QdqOptions, quantize_qdq

    options = QdqOptions(
        method=args.method,
        keep_float=tuple(args.keep_float),
        keep_head_float=not args.quantize_head,
        op_types=tuple(t.strip() for t in args.op_types.split(",") if t.strip()),
        chunk=args.chunk,
        max_images=args.max_images,
        percentile=args.percentile,
    )
    result = quantize_qdq(args.model, args.calib, args.out, options)
    print(
        f"wrote {result.out}: {result.method}, {result.n_images} images in chunks of {result.chunk}, "
        f"{result.quantized_nodes} QuantizeLinear nodes, {len(result.kept_float)} nodes kept float, "
        f"{result.seconds:.1f} s, peak RSS {result.peak_rss_mib:.0f} MiB; runs in ONNX Runtime CPU"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from stopsign.calibration.report import build_report
    from stopsign.edge.model.artifacts import atomic_write_text

    text, _ = build_report(args.model, args.int8, args.data, args.fp16, args.split, args.limit, args.backend)
    section = f"{REPORT_BEGIN}\n{text}{REPORT_END}\n"
    out: Path = args.out
    if out.is_file() and REPORT_BEGIN in (old := out.read_text(encoding="utf-8")) and REPORT_END in old:
        before, rest = old.split(REPORT_BEGIN, 1)
        after = rest.split(REPORT_END, 1)[1].lstrip("\n")
        new = before + section + after
    elif out.is_file():
        new = out.read_text(encoding="utf-8").rstrip("\n") + "\n\n## Results\n\n" + section
    else:
        new = "# INT8 precision report\n\n" + section
    atomic_write_text(out, new)
    print(text)
    print(f"wrote {out}")
    return 0


def _legacy_info(args: argparse.Namespace) -> int:
    from stopsign.calibration.cache import CacheBinding, check_cache, read_sidecar

    if not args.cache.is_file():
        raise CalibrationError(f"{args.cache}: no such calibration cache")
    sidecar = read_sidecar(args.cache)
    print(json.dumps(sidecar, indent=2, sort_keys=True))
    if args.model is not None:
        from stopsign.calibration.qdq import load_model_and_spec
        from stopsign.edge.model.artifacts import sha256_file

        _, spec = load_model_and_spec(args.model)
        expected = CacheBinding(
            model_sha256=sha256_file(args.model),
            algorithm=args.algorithm or str(sidecar["algorithm"]),
            input_size=spec.input_size,
        )
        check_cache(args.cache, expected)
        print(f"valid for {args.model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
