"""``edge-train``: a thin dispatcher; each subcommand lives in its own module.

Every subcommand module provides ``add_parser(subparsers)`` (registers its flags) and
``run(args) -> int``. Add a subcommand by appending its module name to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module under stopsign.train, one-line help)
SUBCOMMANDS: list[tuple[str, str, str]] = [
    (
        "train",
        "stopsign.train.train_cmd",
        "train a YOLOv5 model, or a Darknet .cfg one (YOLOv5 train.py flags)",
    ),
    ("tune", "stopsign.train.tune_cmd", "hyper-parameter search with Optuna (one machine to a cluster)"),
    ("val", "stopsign.train.val_cmd", "evaluate a checkpoint: mAP, curves, operating threshold"),
    ("info", "stopsign.train.info", "layers, parameters and GFLOPs of a model config"),
    (
        "import-yolov5",
        "stopsign.train.import_yolov5",
        "convert an official pickled YOLOv5 checkpoint, safely",
    ),
    (
        "import-darknet",
        "stopsign.train.darknet.import_cmd",
        "a Darknet (YOLOv3/v4) .cfg + .weights -> checkpoint folder",
    ),
    (
        "export-darknet",
        "stopsign.train.darknet.export_cmd",
        "a checkpoint of a Darknet-cfg model -> .weights + .cfg for Darknet / OpenCV",
    ),
    (
        "import-onnx",
        "stopsign.train.import_onnx",
        "a checkpoint back from an exported FP32 ONNX, to fine-tune",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-train", description="Train, evaluate and inspect YOLOv5 stop-sign models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_parser(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("edge-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
