"""A torch model equivalent to a Darknet cfg: :class:`DarknetModel`.

It offers what the rest of the project uses of a YOLOv5 :class:`~stopsign.train.model.YoloModel`
(``detect``, ``nc``, ``strides``, ``anchors_pixels()``, ``fuse()``, ``yaml``, ``name``), so a
checkpoint of either kind trains, evaluates, exports and runs the same way.

``model.yaml`` of a Darknet model is ``{"darknet_cfg": <cfg text>, "nc": N, "name": ...}``:
the cfg travels with the checkpoint (and as ``model.cfg`` beside it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stopsign.train.darknet.cfg import (
    DarknetCfg,
    DarknetCfgError,
    Section,
    load_cfg,
    parse_cfg,
    substitute_classes,
    with_classes,
)
from stopsign.train.darknet.layers import (
    DarknetConv,
    DarknetHead,
    DarknetMaxPool,
    Route,
    Shortcut,
    Upsample,
    YoloMarker,
)

DARKNET_KEY = "darknet_cfg"
CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


@dataclass
class _Shape:
    channels: int
    stride: int  # input pixels per cell


def _relative(section: Section, value: int, key: str) -> int:
    index = value + section.index if value < 0 else value
    if not 0 <= index < section.index:
        raise section.fail(f"{key} refers to layer {index}, which is not an earlier layer", key)
    return index


def _build_layer(section: Section, shapes: list[_Shape], in_channels: int) -> tuple[nn.Module, _Shape]:
    prev = shapes[-1] if shapes else _Shape(in_channels, 1)
    kind = section.kind
    if kind == "convolutional":
        filters = section.get_int("filters", 1)
        size = section.get_int("size", 1)
        stride = section.get_int("stride", 1)
        padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
        groups = section.get_int("groups", 1)
        if filters < 1 or size < 1 or stride < 1 or groups < 1:
            raise section.fail(
                f"filters, size, stride and groups must be >= 1 (got {filters}, {size}, {stride}, {groups})"
            )
        if prev.channels % groups or filters % groups:
            raise section.fail(
                f"groups={groups} does not divide {prev.channels} input / {filters} output channels", "groups"
            )
        act = section.get_str("activation", "logistic")  # Darknet's default
        bn = section.get_int("batch_normalize", 0) != 0
        return DarknetConv(prev.channels, filters, size, stride, padding, groups, bn, act), _Shape(
            filters, prev.stride * stride
        )
    if kind == "route":
        sources = [_relative(section, v, "layers") for v in section.get_ints("layers")]
        groups = section.get_int("groups", 1)
        group_id = section.get_int("group_id", 0)
        if groups < 1 or not 0 <= group_id < groups:
            raise section.fail(f"group_id={group_id} must be in [0, groups={groups})", "group_id")
        picked = [shapes[s] for s in sources]
        if len({p.stride for p in picked}) != 1:
            raise section.fail(
                f"layers {sources} have different sizes (strides {[p.stride for p in picked]})", "layers"
            )
        for s, p in zip(sources, picked):
            if p.channels % groups:
                raise section.fail(
                    f"layer {s} has {p.channels} channels, not divisible by groups={groups}", "groups"
                )
        return Route(sources, groups, group_id), _Shape(
            sum(p.channels // groups for p in picked), picked[0].stride
        )
    if kind == "shortcut":
        sources = section.get_ints("from")
        if len(sources) != 1:
            raise section.fail("only one 'from' layer is supported", "from")
        source = _relative(section, sources[0], "from")
        if shapes[source].channels != prev.channels or shapes[source].stride != prev.stride:
            raise section.fail(
                f"layer {source} ({shapes[source].channels} channels) cannot be added to the previous "
                f"layer ({prev.channels} channels)",
                "from",
            )
        return Shortcut(source), prev
    if kind == "maxpool":
        stride = section.get_int("stride", 1)
        size = section.get_int("size", stride)
        padding = section.get_int("padding", size - 1)
        if size < 1 or stride < 1 or padding < 0:
            raise section.fail(f"size={size}, stride={stride}, padding={padding} must be positive")
        return DarknetMaxPool(size, stride, padding), _Shape(prev.channels, prev.stride * stride)
    if kind == "upsample":
        stride = section.get_int("stride", 2)
        if stride < 1 or prev.stride % stride:
            raise section.fail(
                f"stride={stride} must be a positive factor of the input's stride {prev.stride}", "stride"
            )
        return Upsample(stride), _Shape(prev.channels, prev.stride // stride)
    if kind == "yolo":
        return YoloMarker(), prev
    raise section.fail("unsupported layer type")


@dataclass
class _YoloLevel:
    layer: int
    anchors: list[float]
    stride: int
    scale_x_y: float
    new_coords: bool


def _yolo_level(section: Section, shape: _Shape, nc: int) -> _YoloLevel:
    anchors = section.get_floats("anchors")
    if len(anchors) % 2:
        raise section.fail(f"anchors has {len(anchors)} values, not (w, h) pairs", "anchors")
    total = len(anchors) // 2
    num = section.get_int("num", total)
    if num != total:
        raise section.fail(f"num={num} but anchors holds {total} pairs", "num")
    mask = section.get_ints("mask", list(range(total)))
    if any(not 0 <= m < total for m in mask):
        raise section.fail(f"mask {mask} picks anchors outside 0..{total - 1}", "mask")
    classes = section.get_int("classes", 20)
    if classes != nc:
        raise section.fail(f"classes={classes} but another yolo layer says {nc}", "classes")
    need = len(mask) * (nc + 5)
    if shape.channels != need:
        raise section.fail(
            f"its input has {shape.channels} channels; {len(mask)} anchors x (classes {nc} + 5) needs {need} "
            "(the 'filters' of the convolution before it)"
        )
    picked = [v for m in mask for v in anchors[2 * m : 2 * m + 2]]
    new_coords = section.get_int("new_coords", 0)
    if new_coords not in (0, 1):
        raise section.fail(f"new_coords={new_coords} must be 0 or 1", "new_coords")
    return _YoloLevel(
        section.index, picked, shape.stride, section.get_float("scale_x_y", 1.0), bool(new_coords)
    )


def resolve_darknet_cfg(
    cfg: str | Path | dict[str, Any] | DarknetCfg, nc: int | None = None
) -> tuple[DarknetCfg, str]:
    """A parsed cfg and its name from a cfg path, a shipped name (``yolov4-tiny``), a model.yaml
    dict (``darknet_cfg`` text) or a :class:`DarknetCfg`."""
    if isinstance(cfg, DarknetCfg):
        return cfg, Path(cfg.source).stem
    if isinstance(cfg, dict):
        text = str(cfg[DARKNET_KEY])
        name = str(cfg.get("name", "darknet"))
        if "{num_classes}" in text:
            text = substitute_classes(text, int(nc if nc is not None else cfg["nc"]))
        return parse_cfg(text, f"{name}.cfg"), name
    path = Path(cfg)
    if not path.exists():
        shipped = CFGS_DIR / (path.name if path.suffix == ".cfg" else f"{path.name}.cfg")
        if shipped.exists():
            path = shipped
        else:
            names = ", ".join(sorted(p.stem for p in CFGS_DIR.glob("*.cfg")))
            raise DarknetCfgError(f"{cfg}: no such cfg file (shipped Darknet cfgs: {names})")
    return load_cfg(path, nc), path.stem


def is_darknet_cfg(cfg: Any) -> bool:
    """True for a Darknet cfg: a ``.cfg`` path / shipped name, a DarknetCfg, or a model.yaml dict of one."""
    if isinstance(cfg, DarknetCfg):
        return True
    if isinstance(cfg, dict):
        return DARKNET_KEY in cfg
    if isinstance(cfg, (str, Path)):
        path = Path(cfg)
        return path.suffix == ".cfg" or (not path.suffix and (CFGS_DIR / f"{path.name}.cfg").exists())
    return False


class DarknetModel(nn.Module):
    """The network a Darknet cfg describes; ``layers[i]`` is the cfg's layer ``i``.

    Args:
        cfg: see :func:`resolve_darknet_cfg`.
        nc: number of classes; must match the cfg's ``classes`` unless the cfg has the
            ``{num_classes}`` placeholder (shipped cfgs), which it fills.
    """

    def __init__(self, cfg: str | Path | dict[str, Any] | DarknetCfg, nc: int | None = None) -> None:
        super().__init__()
        parsed, name = resolve_darknet_cfg(cfg, nc)
        if nc is not None and parsed.num_classes != nc:
            # classes of every yolo layer and filters of the convolution feeding it, rewritten
            parsed = parse_cfg(with_classes(parsed, nc), parsed.source)
        self.cfg = parsed
        self.name = name
        self.in_channels = parsed.net.get_int("channels", 3)
        shapes: list[_Shape] = []
        layers: list[nn.Module] = []
        levels: list[_YoloLevel] = []
        nc_cfg = parsed.num_classes
        for section in parsed.layers:
            layer, shape = _build_layer(section, shapes, self.in_channels)
            if section.kind == "yolo":
                levels.append(_yolo_level(section, shape, nc_cfg))
            layers.append(layer)
            shapes.append(shape)
        if len({len(level.anchors) for level in levels}) != 1:
            raise DarknetCfgError(
                f"{parsed.source}: the yolo layers use different numbers of anchors "
                f"({[len(level.anchors) // 2 for level in levels]}); the runtime needs the same number per level"
            )
        h, w = parsed.input_size
        largest = max(s.stride for s in shapes)
        if h % largest or w % largest:
            raise DarknetCfgError(
                f"{parsed.net.where('width')}: input {w}x{h} is not a multiple of the largest stride {largest}"
            )
        self.layers = nn.ModuleList(layers)
        self.yolo_layers = [level.layer for level in levels]
        self._needed = self._needed_outputs()
        self.head = DarknetHead(
            nc_cfg,
            [level.anchors for level in levels],
            [level.stride for level in levels],
            [level.scale_x_y for level in levels],
            [level.new_coords for level in levels],
        )
        self.yaml = {"name": name, "nc": nc_cfg, DARKNET_KEY: parsed.text}
        self._initialize_biases()

    @torch.no_grad()
    def _initialize_biases(self) -> None:
        """YOLOv5's priors on the convolutions feeding the yolo layers (a random start trains
        faster with them; imported weights overwrite them): ~8 objects per 640x640 image, 0.6/nc.
        A ``new_coords=1`` level's logistic comes after the bias, so the same prior holds."""
        for level, index in enumerate(self.yolo_layers):
            feeder = self.layers[index - 1]
            if not isinstance(feeder, DarknetConv) or feeder.conv.bias is None:
                continue
            bias = feeder.conv.bias.view(self.head.na, -1)
            bias[:, 4] += math.log(8 / (640 / float(self.head.stride[level])) ** 2)
            bias[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))

    def _needed_outputs(self) -> set[int]:
        needed = set(self.yolo_layers)
        for layer in self.layers:
            if isinstance(layer, Route):
                needed.update(layer.sources)
            elif isinstance(layer, Shortcut):
                needed.add(layer.source)
        return needed

    @property
    def detect(self) -> DarknetHead:
        return self.head

    @property
    def nc(self) -> int:
        return self.head.nc

    @property
    def strides(self) -> list[int]:
        return [int(s) for s in self.head.stride.tolist()]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.cfg.input_size

    @property
    def resize(self) -> str:
        """The ModelSpec resize mode Darknet used to train it: ``letter_box=1`` or stretching."""
        return "letterbox" if self.cfg.letter_box else "stretch"

    def anchors_pixels(self) -> list[list[float]]:
        scaled = self.head.anchors * self.head.stride.view(-1, 1, 1)
        return [[round(float(v), 4) for v in row.flatten()] for row in scaled]

    def conv_layers(self) -> list[tuple[int, DarknetConv]]:
        return [(i, layer) for i, layer in enumerate(self.layers) if isinstance(layer, DarknetConv)]

    def forward(self, x: torch.Tensor):
        outputs: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Route):
                x = layer([outputs[s] for s in layer.sources])
            elif isinstance(layer, Shortcut):
                x = layer(x, outputs[layer.source])
            else:
                x = layer(x)
            if i in self._needed:
                outputs[i] = x
        return self.head([outputs[i] for i in self.yolo_layers])

    @torch.no_grad()
    def fuse(self) -> DarknetModel:
        """Fold every BatchNorm into its convolution (inference only; changes state-dict keys)."""
        for _, layer in self.conv_layers():
            layer.fuse()
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
