"""Torch modules for the Darknet layer types: what each ``[section]`` of a cfg computes.

State-dict keys are ``layers.<i>.conv.weight``, ``layers.<i>.bn.*`` (or ``layers.<i>.conv.bias``
without batch norm), with ``<i>`` the layer index of the cfg (``[net]`` excluded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stopsign.train.model.modules import fuse_conv_bn

# Batch-norm epsilon: OpenCV's Darknet reader (the parity reference) divides by
# sqrt(variance + 1e-6); it matters only for channels whose rolling variance is tiny.
DARKNET_BN_EPS = 1e-6
# Darknet's leaky activation slope.
LEAKY_SLOPE = 0.1


def activation(name: str) -> nn.Module:
    """The torch module of a Darknet activation name (the cfg parser has checked it)."""
    if name == "linear":
        return nn.Identity()
    if name == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if name == "mish":
        return nn.Mish(inplace=True)
    if name == "logistic":
        return nn.Sigmoid()
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown Darknet activation {name!r}")


class DarknetConv(nn.Module):
    """``[convolutional]``: Conv2d (+ BatchNorm2d, then no conv bias) + activation."""

    def __init__(
        self, c1: int, c2: int, k: int, s: int, p: int, groups: int, batch_norm: bool, act: str
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, p, groups=groups, bias=not batch_norm)
        self.bn: nn.Module = (
            nn.BatchNorm2d(c2, eps=DARKNET_BN_EPS, momentum=0.03) if batch_norm else nn.Identity()
        )
        self.act = activation(act)
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()


class Route(nn.Module):
    """``[route]``: concatenation of earlier layers' outputs, or one channel group of each."""

    def __init__(self, sources: list[int], groups: int = 1, group_id: int = 0) -> None:
        super().__init__()
        self.sources = sources
        self.groups = groups
        self.group_id = group_id

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.groups > 1:
            parts = []
            for x in inputs:
                size = x.shape[1] // self.groups
                parts.append(x[:, size * self.group_id : size * (self.group_id + 1)])
            inputs = parts
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)


class Shortcut(nn.Module):
    """``[shortcut]``: the previous layer's output plus an earlier layer's (linear activation)."""

    def __init__(self, source: int) -> None:
        super().__init__()
        self.source = source

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return x + other


class DarknetMaxPool(nn.Module):
    """``[maxpool]`` with Darknet's geometry.

    Darknet pads by ``padding`` (default ``size - 1``) in total, ``padding // 2`` of it before the
    image, and the output has ``(n + padding - size) // stride + 1`` cells; padded cells never win.
    So ``size=2 stride=1`` keeps the size (window to the right and below), ``size=5 stride=1``
    is a centred SPP pool, ``size=2 stride=2`` halves the size.
    """

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def out_size(self, n: int) -> int:
        return (n + self.padding - self.size) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = self.padding // 2
        if self.stride == 1:  # output size = input size + padding - size + 1: pads known up front
            after = self.padding - before
            if self.padding:
                x = F.pad(x, [before, after, before, after], value=float("-inf"))
            return F.max_pool2d(x, self.size, 1)
        if before == 0 and self.padding == self.stride - 1:
            # (n + stride - 1 - size) // stride + 1 cells, a partial last window: ceil mode (2x2 s2)
            return F.max_pool2d(x, self.size, self.stride, ceil_mode=True)
        h, w = (int(v) for v in x.shape[-2:])  # the general case; fixed by the input size
        pads = []
        for n in (w, h):  # F.pad order: last dim first
            after = (self.out_size(n) - 1) * self.stride + self.size - n - before
            pads += [before, max(after, 0)]
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class Upsample(nn.Module):
    """``[upsample]``: nearest-neighbour, by an integer factor."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=float(self.stride), mode="nearest")


class YoloMarker(nn.Module):
    """``[yolo]``: marks its input as one detection level; decoding happens in :class:`DarknetHead`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class DarknetHead(nn.Module):
    """Decodes the yolo layers' inputs, as Darknet's yolo layer does, into the ModelSpec contract.

    Per level ``l`` with ``na`` anchors (the ``mask``-picked ones) and ``scale_x_y`` ``s``:
    ``cx = (sigmoid(tx) * s - (s - 1) / 2 + grid_x) * stride``, ``w = exp(tw) * anchor_w``, and
    objectness and class probabilities are sigmoids. With ``new_coords=1`` the convolution's
    logistic activation has already squashed every value: ``cx = (tx * s - (s - 1) / 2 + grid_x) *
    stride``, ``w = (2 * tw) ** 2 * anchor_w``, probabilities as they are.

    Training: per-level maps (batch, na, ny, nx, 5 + nc) of logits. A ``new_coords=1`` level's
    convolution outputs probabilities; its map is given as their logits (``torch.logit``, clamped at
    1e-6), so the trainer's BCE-with-logits and :meth:`box_in_cell` treat every level alike and the
    gradient still flows through the convolution's logistic. Inference: (batch, levels x na x ny x
    nx, 5 + nc) with cx, cy, w, h in input pixels (anchor-major within a level, levels in cfg
    order), decoded from the convolutions' own outputs; with ``export`` False, (that, the per-level
    maps).

    Attributes mirror YOLOv5's Detect where the trainer reads them: ``nc``, ``no``, ``nl``,
    ``na``, ``anchors`` (nl, na, 2) in grid units, ``stride`` (nl,), ``export``.
    """

    def __init__(
        self,
        nc: int,
        anchors: list[list[float]],
        strides: list[int],
        scale_x_y: list[float],
        new_coords: list[bool],
    ) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        stride = torch.tensor(strides, dtype=torch.float32)
        pixels = torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2)
        self.register_buffer("anchors", pixels / stride.view(-1, 1, 1))
        self.register_buffer("stride", stride, persistent=False)
        self.stride_values = [float(v) for v in strides]  # python numbers: constants in an export
        self.scale_x_y = list(scale_x_y)
        self.new_coords = list(new_coords)
        self.export = False

    def forward(self, xs: list[torch.Tensor]):
        maps = []
        for x in xs:
            bs, _, ny, nx = x.shape
            maps.append(x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return self._as_logits(maps)
        decoded = torch.cat([self._decode(m, level) for level, m in enumerate(maps)], dim=1)
        return decoded if self.export else (decoded, self._as_logits(maps))

    def _as_logits(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.logit(m, eps=1e-6) if self.new_coords[level] else m for level, m in enumerate(maps)]

    @property
    def reaches_neighbours(self) -> bool:
        """True when every level's centre can reach half a cell into the neighbours (scale_x_y >= 2),
        so the trainer may also assign targets to neighbouring cells as YOLOv5 does."""
        return all(s >= 2.0 for s in self.scale_x_y)

    def box_in_cell(
        self, logits: torch.Tensor, anchor_wh: torch.Tensor, level: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training-time decode of picked rows (m, 4) -> xy from the cell corner and wh, in grid
        units (``anchor_wh`` in grid units too): the inference decode, before the grid and stride.
        ``exp`` is clamped (e^6 = 403x the anchor) so an early wild logit cannot overflow; a
        ``new_coords=1`` level's width is ``(2 p)^2`` anchors, bounded by 4 already."""
        s = self.scale_x_y[level]
        xy = logits[:, :2].sigmoid() * s - 0.5 * (s - 1)
        if self.new_coords[level]:
            wh = (2 * logits[:, 2:4].sigmoid()) ** 2 * anchor_wh
        else:
            wh = torch.exp(logits[:, 2:4].clamp(max=6.0)) * anchor_wh
        return xy, wh

    def _decode(self, x: torch.Tensor, level: int) -> torch.Tensor:
        bs, na, ny, nx, no = x.shape
        s = self.scale_x_y[level]
        stride = self.stride_values[level]
        ys = torch.arange(ny, device=x.device, dtype=x.dtype)
        xs = torch.arange(nx, device=x.device, dtype=x.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((gx, gy), dim=-1).view(1, 1, ny, nx, 2)
        anchor_wh = (self.anchors[level] * stride).to(x.dtype).view(1, na, 1, 1, 2)
        if self.new_coords[level]:
            xy = (x[..., 0:2] * s - 0.5 * (s - 1) + grid) * stride
            wh = (x[..., 2:4] * 2) ** 2 * anchor_wh
            rest = x[..., 4:]
        else:
            xy = (x[..., 0:2].sigmoid() * s - 0.5 * (s - 1) + grid) * stride
            wh = torch.exp(x[..., 2:4]) * anchor_wh
            rest = x[..., 4:].sigmoid()
        return torch.cat((xy, wh, rest), dim=-1).view(bs, na * ny * nx, no)
