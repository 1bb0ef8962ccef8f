"""``edge-train val``: evaluate a checkpoint on a split; plots, metrics and thresholds.

Writes RUN/PR_curve.png, RUN/F1_curve.png and RUN/metrics.json, and (unless --no-write-spec)
stores ``operating_threshold`` and the metrics in the checkpoint's spec.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.train.checkpoint import SPEC_FILE, CheckpointError, load_checkpoint
from stopsign.train.data.layout import DatasetError
from stopsign.train.devices import DeviceError, resolve_device


def add_parser(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--weights", required=True, help="checkpoint folder (e.g. runs/train/exp/weights/best)")
    add("--data", required=True, help="data.yaml or a dataset folder holding one")
    add("--split", choices=("val", "train"), default="val", help="which split to evaluate (default val)")
    add(
        "--img",
        "--img-size",
        "--imgsz",
        dest="img",
        type=int,
        default=None,
        help="input size (default: the checkpoint's)",
    )
    add("--batch", "--batch-size", dest="batch", type=int, default=32, help="batch size (default 32)")
    add("--conf", type=float, default=0.001, help="confidence floor for the curves (default 0.001)")
    add("--iou", type=float, default=0.6, help="NMS IoU (default 0.6)")
    add("--device", default="", help="'' auto, cpu, cuda or 0")
    add("--workers", type=int, default=2, help="data-loader worker processes (default 2)")
    add(
        "--max-fp-rate", type=float, default=0.02, help="confuser image FP-rate bound of the recall threshold"
    )
    add(
        "--threshold",
        type=threshold_choice,
        default="f1",
        help="operating_threshold written to the spec: 'f1' (F1-optimal), 'confuser' (max recall under "
        "the FP-rate bound) or a confidence in (0, 1) chosen by other evidence (default f1)",
    )
    add("--project", default="runs/val", help="output parent folder (default runs/val)")
    add("--name", default="exp", help="output folder name (default exp)")
    add(
        "--no-write-spec",
        dest="write_spec",
        action="store_false",
        help="leave the checkpoint's spec.json as is",
    )


def threshold_choice(text: str) -> str | float:
    """``f1``, ``confuser`` or a fixed confidence in (0, 1)."""
    if text in ("f1", "confuser"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'f1', 'confuser' or a number in (0, 1), got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a fixed threshold must be in (0, 1), got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from stopsign.train import evaluate
    from stopsign.train.config import Hyp
    from stopsign.train.dataset import ImageStore, load_data_spec
    from stopsign.train.loader import YoloDataset, build_loader
    from stopsign.train.plots import plot_f1_curve, plot_pr_curve
    from stopsign.train.trainer import unique_run_dir

    try:
        for name, value in (("--conf", args.conf), ("--iou", args.iou), ("--max-fp-rate", args.max_fp_rate)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        checkpoint = load_checkpoint(Path(args.weights))
        data = load_data_spec(args.data, check=False)
        if data.nc != checkpoint.model.nc:
            raise ValueError(f"{args.data}: {data.nc} classes but the checkpoint has {checkpoint.model.nc}")
        img = args.img or checkpoint.spec.input_size[0]
        if img % 32:
            raise ValueError(f"--img {img} must be a multiple of 32")
        device = resolve_device(args.device).device
        split = data.val if args.split == "val" else data.train
        dataset = YoloDataset(
            split, ImageStore(split.images, img), img, Hyp(), augment=False, resize=checkpoint.spec.resize
        )
        loader = build_loader(dataset, args.batch, args.workers, False, 0, device.type == "cuda")
        model = checkpoint.model.to(device)
        records, _, ms = evaluate.predict_and_match(model, loader, device, args.conf, args.iou)
        result = evaluate.summarise(records, split, data.nc, None, ms, args.max_fp_rate, args.threshold)
        spec = evaluate.spec_with_result(checkpoint.spec, result, args.threshold)
    except (CheckpointError, DatasetError, DeviceError, ValueError) as exc:
        print(f"edge-train val: {exc}")
        return 2
    out = unique_run_dir(Path(args.project), args.name, exist_ok=False)
    out.mkdir(parents=True)
    plot_pr_curve(result, data.names, out / "PR_curve.png")
    plot_f1_curve(result, data.names, out / "F1_curve.png")
    atomic_write_text(out / "metrics.json", json.dumps(result.summary(), indent=2) + "\n")
    print(evaluate.format_result(result, data.names))
    if args.write_spec:
        spec.save(Path(args.weights) / SPEC_FILE)
        print(
            f"{Path(args.weights) / SPEC_FILE}: operating_threshold {spec.operating_threshold} ({args.threshold})"
        )
    print(f"plots and metrics.json in {out}")
    return 0
