"""``edge-train export-darknet CKPT --out X.weights``: a Darknet checkpoint back to Darknet files.

Writes ``X.weights`` (version 0.2.5, ``seen`` as int64), and beside it ``X.cfg`` (the model's cfg
with ``[net]`` width/height set to the checkpoint's input size, and ``letter_box=1`` when the
checkpoint was trained letterboxed, as this project's trainer does) and ``X.names``. Darknet
and OpenCV's ``readNetFromDarknet`` read them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.train.checkpoint import CheckpointError, load_checkpoint
from stopsign.train.darknet.cfg import parse_cfg, with_net_options
from stopsign.train.darknet.model import DarknetModel
from stopsign.train.darknet.weights import WeightsHeader, save_darknet_weights


def export_darknet(ckpt_dir: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (.weights) and its .cfg / .names; returns (weights path, cfg path)."""
    checkpoint = load_checkpoint(ckpt_dir)
    model = checkpoint.model
    if not isinstance(model, DarknetModel):
        raise CheckpointError(
            f"{ckpt_dir}: a {checkpoint.spec.architecture or 'YOLOv5'} checkpoint; export-darknet writes "
            "models built from a Darknet .cfg (edge-train train --cfg yolov4-tiny.cfg, or import-darknet)"
        )
    spec = checkpoint.spec
    height, width = spec.input_size
    options: dict[str, str | int] = {"width": width, "height": height}
    if spec.resize == "letterbox":
        options["letter_box"] = 1
    elif model.cfg.letter_box:
        options["letter_box"] = 0
    out = Path(out)
    cfg_path = out.with_suffix(".cfg")
    cfg_text = with_net_options(model.cfg, options)
    parse_cfg(cfg_text, str(cfg_path))  # what is written parses back
    seen = int(spec.training_data.get("darknet_seen", 0) or 0)
    save_darknet_weights(model, out, WeightsHeader(0, 2, 5, seen))
    atomic_write_text(cfg_path, cfg_text)
    atomic_write_text(out.with_suffix(".names"), "".join(f"{name}\n" for name in spec.class_names))
    return out, cfg_path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder of a Darknet-cfg model")
    parser.add_argument("--out", type=Path, required=True, help="X.weights to write (X.cfg, X.names beside)")


def run(args: argparse.Namespace) -> int:
    try:
        weights, cfg = export_darknet(args.checkpoint, args.out)
    except CheckpointError as exc:
        print(f"edge-train export-darknet: {exc}")
        return 2
    print(f"wrote {weights} and {cfg} (+ {weights.with_suffix('.names').name})")
    return 0
