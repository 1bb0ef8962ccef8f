"""Build a YOLOv5 model from a YOLOv5-format YAML (``nc``, ``depth_multiple``, ``width_multiple``,
``anchors``, ``backbone`` and ``head`` rows of ``[from, number, module, args]``).

Compatible with YOLOv5's own parser: the same channel rounding and repeat scaling, the same layer
order and attribute names, so ``model.0.conv.weight`` ... ``model.24.m.2.bias`` match an official
checkpoint key for key. Module names are looked up in a registry, never ``eval``-ed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from stopsign.train.model.modules import C3, SPP, SPPF, Bottleneck, BottleneckCSP, Concat, Conv, Detect, Focus

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
NUM_CLASSES_PLACEHOLDER = "{num_classes}"

MODULES: dict[str, type[nn.Module]] = {
    "Conv": Conv,
    "Focus": Focus,
    "Bottleneck": Bottleneck,
    "BottleneckCSP": BottleneckCSP,
    "C3": C3,
    "SPP": SPP,
    "SPPF": SPPF,
    "Concat": Concat,
    "Detect": Detect,
    "nn.Upsample": nn.Upsample,
    "Upsample": nn.Upsample,
}
# Blocks whose first argument is the output width, scaled by width_multiple.
_CHANNEL_BLOCKS = (Conv, Focus, Bottleneck, BottleneckCSP, C3, SPP, SPPF)
# Blocks that take the repeat count as their third argument instead of being repeated.
_REPEAT_BLOCKS = (BottleneckCSP, C3)


class ModelConfigError(ValueError):
    """The model YAML is malformed; the message names the file and the row."""


def make_divisible(value: float, divisor: int = 8) -> int:
    return int(math.ceil(value / divisor) * divisor)


def resolve_cfg(cfg: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Load a model config: a dict, a YAML path, or a shipped name such as ``yolov5n``.

    Returns the parsed dict (``nc`` may still be the ``{num_classes}`` placeholder) and a name.
    """
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg), str(cfg.get("name", "custom"))
    path = Path(cfg)
    if not path.suffix and not path.exists():
        path = MODELS_DIR / f"{cfg}.yaml"
    elif not path.exists() and (MODELS_DIR / path.name).exists():
        path = MODELS_DIR / path.name
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.yaml")))
        raise ModelConfigError(f"model config {cfg}: no such file (shipped configs: {shipped})")
    text = path.read_text(encoding="utf-8")
    return parse_cfg_text(text, str(path)), path.stem


def parse_cfg_text(text: str, source: str = "<yaml>") -> dict[str, Any]:
    # The report's YAML is a notebook template: `nc: {num_classes}` is not valid as a number, so it
    # is kept as the placeholder string and resolved from the data (or --nc) at build time.
    text = text.replace(NUM_CLASSES_PLACEHOLDER, f"'{NUM_CLASSES_PLACEHOLDER}'")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"{source}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{source}: expected a mapping at the top level")
    return data


def dump_cfg(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def _check_cfg(cfg: dict[str, Any], source: str) -> None:
    for key in ("depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in cfg:
            raise ModelConfigError(f"{source}: missing key '{key}'")
    anchors = cfg["anchors"]
    if not isinstance(anchors, list) or not all(isinstance(r, list) and len(r) % 2 == 0 for r in anchors):
        raise ModelConfigError(f"{source}: 'anchors' must be a list of [w, h, w, h, ...] rows")
    for key in ("depth_multiple", "width_multiple"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] <= 0:
            raise ModelConfigError(f"{source}: '{key}' must be a positive number, got {cfg[key]!r}")


def parse_model(
    cfg: dict[str, Any], in_channels: int = 3, source: str = "<yaml>"
) -> tuple[nn.Sequential, list[int]]:
    """Layers and the indices whose outputs later layers need (YOLOv5's ``save`` list)."""
    _check_cfg(cfg, source)
    nc, anchors = cfg["nc"], cfg["anchors"]
    depth, width = cfg["depth_multiple"], cfg["width_multiple"]
    num_outputs = (len(anchors[0]) // 2) * (nc + 5)
    symbols = {"nc": nc, "anchors": anchors, "None": None}
    layers: list[nn.Module] = []
    save: list[int] = []
    channels = [in_channels]
    rows = list(cfg["backbone"]) + list(cfg["head"])
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4):
            raise ModelConfigError(f"{source}: layer {i} must be [from, number, module, args], got {row!r}")
        frm, number, module_name, args = row
        module = MODULES.get(module_name)
        if module is None:
            raise ModelConfigError(
                f"{source}: layer {i}: unknown module {module_name!r} (known: {sorted(MODULES)})"
            )
        args = [symbols.get(a, a) if isinstance(a, str) else a for a in args]
        sources = [frm] if isinstance(frm, int) else list(frm)
        try:
            inputs = [channels[f] for f in sources]
        except IndexError:
            raise ModelConfigError(
                f"{source}: layer {i}: 'from' {frm} points past the layers so far"
            ) from None
        repeats = max(round(number * depth), 1) if number > 1 else number
        if module in _CHANNEL_BLOCKS:
            c1, c2 = inputs[0], args[0]
            if c2 != num_outputs:
                c2 = make_divisible(c2 * width, 8)
            args = [c1, c2, *args[1:]]
            if module in _REPEAT_BLOCKS:
                args.insert(2, repeats)
                repeats = 1
        elif module is Concat:
            c2 = sum(inputs)
        elif module is Detect:
            args.append(inputs)
            c2 = inputs[0]
        else:
            c2 = inputs[0]
        try:
            layer = nn.Sequential(*(module(*args) for _ in range(repeats))) if repeats > 1 else module(*args)
        except TypeError as exc:
            raise ModelConfigError(
                f"{source}: layer {i}: bad arguments {args!r} for {module_name} ({exc})"
            ) from None
        layer.i, layer.f = i, frm  # type: ignore[assignment]  # YOLOv5 tags layers this way
        layers.append(layer)
        save.extend(f % i for f in sources if f != -1)
        if i == 0:
            channels = []
        channels.append(c2)
    return nn.Sequential(*layers), sorted(set(save))


class YoloModel(nn.Module):
    """YOLOv5 detection model. ``self.model`` is the layer list, as in YOLOv5 (state-dict keys)."""

    def __init__(
        self, cfg: str | Path | dict[str, Any] = "yolov5n", nc: int | None = None, in_channels: int = 3
    ):
        super().__init__()
        cfg_dict, name = resolve_cfg(cfg)
        if nc is not None:
            if nc != cfg_dict.get("nc"):
                cfg_dict["nc"] = int(nc)
        elif not isinstance(cfg_dict.get("nc"), int):
            raise ModelConfigError(
                f"model config {name}: 'nc' is {cfg_dict.get('nc')!r}; give the number of classes (--nc or the data)"
            )
        if not isinstance(cfg_dict["nc"], int) or cfg_dict["nc"] < 1:
            raise ModelConfigError(
                f"model config {name}: nc must be a positive integer, got {cfg_dict['nc']!r}"
            )
        self.yaml = cfg_dict
        self.name = name
        self.model, self.save = parse_model(copy.deepcopy(cfg_dict), in_channels, source=name)
        detect = self.detect
        # Strides from a dry forward pass: input size over each level's feature-map size.
        probe = 256
        self.train()
        with torch.no_grad():
            maps = self.forward(torch.zeros(1, in_channels, probe, probe))
        detect.stride.copy_(torch.tensor([probe / m.shape[-2] for m in maps]))
        self._check_anchor_order()
        detect.anchors /= detect.stride.view(-1, 1, 1)
        detect.initialize_biases()
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = 1e-3, 0.03

    @property
    def detect(self) -> Detect:
        head = self.model[-1]
        assert isinstance(head, Detect)
        return head

    @property
    def nc(self) -> int:
        return self.detect.nc

    @property
    def strides(self) -> list[int]:
        return [int(s) for s in self.detect.stride.tolist()]

    def anchors_pixels(self) -> list[list[float]]:
        """Anchors per level, (w, h) pairs flattened, in input pixels (as written in the YAML)."""
        detect = self.detect
        scaled = detect.anchors * detect.stride.view(-1, 1, 1)
        return [[round(float(v), 4) for v in row.flatten()] for row in scaled]

    def _check_anchor_order(self) -> None:
        # Anchor sizes must grow with stride; YOLOv5 flips them when a YAML lists them backwards.
        detect = self.detect
        area = detect.anchors.prod(-1).mean(-1)
        if (area[-1] - area[0]).sign() != (detect.stride[-1] - detect.stride[0]).sign():
            detect.anchors.copy_(detect.anchors.flip(0))

    def forward(self, x: torch.Tensor):
        outputs: list[torch.Tensor | None] = []
        for layer in self.model:
            frm = layer.f
            if frm != -1:
                x = outputs[frm] if isinstance(frm, int) else [x if j == -1 else outputs[j] for j in frm]
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        return x

    @torch.no_grad()
    def fuse(self) -> YoloModel:
        """Fold every BatchNorm into its convolution (inference only; changes state-dict keys)."""
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse()
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(cfg: str | Path | dict[str, Any] = "yolov5n", nc: int | None = None) -> YoloModel:
    """A YOLOv5 model from a YAML, or a Darknet model from a ``.cfg`` (path, shipped name such as
    ``yolov4-tiny``, or a checkpoint's model.yaml holding ``darknet_cfg``); both offer the same
    interface (``detect``, ``nc``, ``strides``, ``anchors_pixels()``, ``fuse()``, ``yaml``)."""
    from stopsign.train.darknet.model import DarknetModel, is_darknet_cfg  # lazy: it imports modules

    if is_darknet_cfg(cfg):
        return DarknetModel(cfg, nc=nc)  # type: ignore[return-value]
    return YoloModel(cfg, nc=nc)
