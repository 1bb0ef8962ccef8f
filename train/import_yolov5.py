"""``edge-train import-yolov5``: official pickled YOLOv5 checkpoint -> our safetensors checkpoint.

Uses :mod:`stopsign.train.yolov5_pickle`, which reads the pickle without running any of it.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from stopsign.train.checkpoint import CheckpointError, save_checkpoint, spec_for_model
from stopsign.train.model.yolo import ModelConfigError, YoloModel
from stopsign.train.yolov5_pickle import (
    InertObject,
    UnsafeCheckpointError,
    inert_state_dict,
    read_yolov5_checkpoint,
)

# Keys YOLOv5 v5.0 kept as buffers that later versions (and we) compute on the fly.
_LEGACY_KEYS = ("anchor_grid",)


class YoloV5ImportError(CheckpointError):
    """The checkpoint is readable but is not a YOLOv5 detection model we can rebuild."""


def _class_names(model_state: dict[str, Any], nc: int) -> list[str]:
    names = model_state.get("names")
    if isinstance(names, dict):  # v7.0: {0: "person", ...}
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or len(names) != nc:
        return [f"class{i}" for i in range(nc)]
    return [str(n) for n in names]


def import_yolov5(checkpoint: str | Path, out: str | Path, img: int | None = None) -> Path:
    """Convert ``checkpoint`` (YOLOv5 v5.0-v7.0 .pt) into a checkpoint folder at ``out``."""
    checkpoint = Path(checkpoint)
    payload = read_yolov5_checkpoint(checkpoint)
    source = payload.get("ema") or payload.get("model")
    if not isinstance(source, InertObject):
        raise YoloV5ImportError(
            f"{checkpoint}: no 'model' or 'ema' module in the checkpoint (keys: {sorted(payload)})"
        )
    model_state = source.state
    cfg = model_state.get("yaml")
    if not isinstance(cfg, dict):
        raise YoloV5ImportError(f"{checkpoint}: the model carries no YAML config (attribute 'yaml')")
    cfg = copy.deepcopy(cfg)
    if cfg.get("activation"):
        raise YoloV5ImportError(
            f"{checkpoint}: custom activation {cfg['activation']!r} is not supported (SiLU only)"
        )
    for key in ("ch", "activation"):
        cfg.pop(key, None)
    cfg["name"] = Path(str(cfg.get("yaml_file", checkpoint.stem))).stem
    cfg.pop("yaml_file", None)
    state = {
        k: v.float() for k, v in inert_state_dict(source).items() if k.rsplit(".", 1)[-1] not in _LEGACY_KEYS
    }
    try:
        model = YoloModel(cfg, nc=cfg.get("nc"))
    except ModelConfigError as exc:
        raise YoloV5ImportError(f"{checkpoint}: its YAML does not build here: {exc}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise YoloV5ImportError(
            f"{checkpoint}: weights do not match the YAML (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    opt = payload.get("opt") if isinstance(payload.get("opt"), dict) else {}
    size = img or opt.get("imgsz") or opt.get("img_size") or 640
    if isinstance(size, (list, tuple)):
        size = size[0]
    spec = spec_for_model(
        model,
        _class_names(model_state, model.nc),
        int(size),
        training_data={"imported_from": checkpoint.name, "yolov5_epoch": payload.get("epoch")},
    )
    return save_checkpoint(out, model, spec)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="official YOLOv5 .pt file (v5.0 to v7.0)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument(
        "--img", type=int, default=None, help="input size recorded in the ModelSpec (default: training size)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        folder = import_yolov5(args.checkpoint, args.out, args.img)
    except (UnsafeCheckpointError, CheckpointError) as exc:
        print(f"edge-train import-yolov5: {exc}")
        return 2
    print(f"imported {args.checkpoint} -> {folder}")
    return 0
