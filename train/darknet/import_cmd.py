"""``edge-train import-darknet CFG WEIGHTS --out CKPT_DIR [--names obj.names]``.

Builds the model the cfg describes, copies the ``.weights`` into it and writes the project's
checkpoint folder (safetensors weights, model.yaml holding the cfg, model.cfg beside, spec.json).
The ModelSpec takes its input size from ``[net]`` width/height and its resize mode from
``letter_box`` (Darknet stretches frames to the input unless ``letter_box=1``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stopsign.train.checkpoint import CheckpointError, save_checkpoint, spec_for_model
from stopsign.train.darknet.cfg import DarknetCfgError, load_cfg
from stopsign.train.darknet.model import DarknetModel
from stopsign.train.darknet.weights import DarknetWeightsError, load_darknet_weights

# Darknet's letter_box fills the border with 0.5 (of 1.0).
DARKNET_PAD_VALUE = 127


def read_names(path: str | Path, nc: int) -> list[str]:
    """Class names, one per line (Darknet's obj.names); the count must be the cfg's classes."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    if len(names) != nc:
        raise CheckpointError(f"{path}: {len(names)} names but the cfg has classes={nc}")
    return names


def import_darknet(
    cfg_path: str | Path, weights_path: str | Path, out: str | Path, names: str | Path | None = None
) -> Path:
    """Write the checkpoint folder of a Darknet cfg + weights to ``out`` and return it."""
    cfg_path, weights_path = Path(cfg_path), Path(weights_path)
    cfg = load_cfg(cfg_path)
    model = DarknetModel(cfg).eval()
    model.name = cfg_path.stem
    model.yaml["name"] = cfg_path.stem
    header = load_darknet_weights(model, weights_path)
    class_names = read_names(names, model.nc) if names else [f"class{i}" for i in range(model.nc)]
    spec = spec_for_model(
        model,
        class_names,
        model.input_size,
        resize=model.resize,
        pad_value=DARKNET_PAD_VALUE if model.resize == "letterbox" else 114,
        training_data={
            "imported_from": weights_path.name,
            "darknet_cfg": cfg_path.name,
            "darknet_version": f"{header.major}.{header.minor}.{header.revision}",
            "darknet_seen": header.seen,
        },
    )
    return save_checkpoint(out, model, spec)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cfg", type=Path, help="Darknet .cfg (e.g. yolov4-obj.cfg)")
    parser.add_argument("weights", type=Path, help="Darknet .weights trained with that cfg")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--names", type=Path, default=None, help="class names, one per line (obj.names)")


def run(args: argparse.Namespace) -> int:
    try:
        folder = import_darknet(args.cfg, args.weights, args.out, args.names)
    except (DarknetCfgError, DarknetWeightsError, CheckpointError) as exc:
        print(f"edge-train import-darknet: {exc}")
        return 2
    print(f"imported {args.cfg} + {args.weights} -> {folder}")
    return 0
