"""``edge-train info``: the layer table, parameter count and GFLOPs of a model config."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from stopsign.train.model.yolo import ModelConfigError, build_model


def _layer_rows(model: torch.nn.Module) -> list[tuple[str, Any, torch.nn.Module]]:
    """(FLOP-counter module name, 'from', layer) of a YOLOv5 model or a Darknet-cfg model."""
    from stopsign.train.darknet.layers import Route, Shortcut
    from stopsign.train.darknet.model import DarknetModel

    if isinstance(model, DarknetModel):
        rows = []
        for index, layer in enumerate(model.layers):
            frm: Any = layer.sources if isinstance(layer, Route) else -1
            if isinstance(layer, Shortcut):
                frm = [-1, layer.source]
            rows.append((f"DarknetModel.layers.{index}", frm, layer))
        return rows
    return [(f"YoloModel.model.{index}", layer.f, layer) for index, layer in enumerate(model.model)]


def model_info(cfg: str, nc: int | None, img: int) -> dict[str, Any]:
    """Per-layer and total parameters and GFLOPs (2 x multiply-accumulates) at ``img`` x ``img``."""
    if img <= 0 or img % 32:
        raise ValueError(f"--img must be a positive multiple of 32, got {img}")
    model = build_model(cfg, nc=nc).eval()
    model.detect.export = True
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, img, img))
    flops_by_module = counter.get_flop_counts()
    layers = []
    for index, (name, frm, layer) in enumerate(_layer_rows(model)):
        flops = sum(flops_by_module.get(name, {}).values())
        layers.append(
            {
                "index": index,
                "from": frm,
                "module": type(layer).__name__
                if not isinstance(layer, torch.nn.Sequential)
                else "Sequential",
                "repeats": len(layer) if isinstance(layer, torch.nn.Sequential) else 1,
                "params": sum(p.numel() for p in layer.parameters()),
                "gflops": flops / 1e9,
            }
        )
    return {
        "name": model.name,
        "nc": model.nc,
        "img": img,
        "layers": layers,
        "params": model.num_parameters(),
        "gflops": counter.get_total_flops() / 1e9,
        "strides": model.strides,
    }


def format_table(info: dict[str, Any]) -> str:
    lines = [f"{'#':>3} {'from':>12} {'n':>2} {'params':>10} {'GFLOPs':>8}  module"]
    for layer in info["layers"]:
        lines.append(
            f"{layer['index']:>3} {layer['from']!s:>12} {layer['repeats']:>2} {layer['params']:>10,} "
            f"{layer['gflops']:>8.3f}  {layer['module']}"
        )
    lines.append(
        f"{info['name']}: {len(info['layers'])} layers, {info['params']:,} parameters, "
        f"{info['gflops']:.2f} GFLOPs at {info['img']}x{info['img']}, nc={info['nc']}, strides {info['strides']}"
    )
    return "\n".join(lines)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cfg",
        default="yolov5n",
        help="model YAML path or shipped name (yolov5n, yolov5s, ...), or a Darknet .cfg (yolov4-tiny, ...)",
    )
    parser.add_argument(
        "--nc", type=int, default=None, help="number of classes (required for {num_classes} templates)"
    )
    parser.add_argument("--img", type=int, default=416, help="input size in pixels for GFLOPs (default 416)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        info = model_info(args.cfg, args.nc, args.img)
    except (ModelConfigError, ValueError) as exc:  # DarknetCfgError is a ValueError
        print(f"edge-train info: {exc}")
        return 2
    print(json.dumps(info, indent=2) if args.json else format_table(info))
    return 0
