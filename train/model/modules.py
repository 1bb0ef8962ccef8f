"""YOLOv5 building blocks. Attribute names match YOLOv5's so state-dict keys are interchangeable."""

from __future__ import annotations

import math

import torch
from torch import nn


def autopad(kernel: int, padding: int | None = None) -> int:
    """'Same' padding for odd kernels."""
    return kernel // 2 if padding is None else padding


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU. After :meth:`fuse` the BN is folded into the conv."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        self.conv = fuse_conv_bn(self.conv, self.bn)
        self.bn = nn.Identity()


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold an inference-mode BatchNorm into the preceding convolution (weights and bias)."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(conv.weight.device)
    bn_scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * bn_scale.view(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * bn_scale)
    fused.requires_grad_(False)
    return fused


class Focus(nn.Module):
    """Space-to-depth (2x2 pixels -> 4 channels) then Conv: the v1-v5 stem."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(
            torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], dim=1)
        )


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """Cross Stage Partial bottleneck of YOLOv5 v1-v5 (https://arxiv.org/abs/1911.11929)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = nn.Conv2d(c1, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * hidden, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), dim=1))))


class C3(nn.Module):
    """CSP bottleneck with three convolutions: the v6+ block."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling with parallel max-pools of several sizes."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] | list[int] = (5, 9, 13)):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=size, stride=1, padding=size // 2) for size in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class SPPF(nn.Module):
    """Fast SPP: three chained 5x5 max-pools equal SPP's 5/9/13 pools, at lower cost."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), dim=1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """YOLOv5 detection head: one 1x1 conv per level predicting (x, y, w, h, obj, classes) per anchor.

    Training: returns the per-level maps (batch, anchors, ny, nx, 5 + nc), logits.
    Inference: returns (batch, total anchors, 5 + nc) with cx, cy, w, h in input pixels and
    sigmoid probabilities - the "yolov5_raw" layout of ModelSpec.
    """

    def __init__(self, nc: int = 80, anchors: list[list[float]] | tuple = (), ch: list[int] | tuple = ()):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        # Anchors in grid units once the model knows its strides (divided in YoloModel.__init__).
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.export = False  # when True, forward returns only the concatenated inference tensor

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor] | tuple:
        outputs = []
        decoded = []
        for i in range(self.nl):
            x = self.m[i](xs[i])
            bs, _, ny, nx = x.shape
            x = x.reshape(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            outputs.append(x)
            if not self.training:
                decoded.append(self._decode(x, i, nx, ny))
        if self.training:
            return outputs
        result = torch.cat(decoded, dim=1)
        return result if self.export else (result, outputs)

    def _decode(self, x: torch.Tensor, level: int, nx: int, ny: int) -> torch.Tensor:
        grid, anchor_grid = self._make_grid(nx, ny, level, x.dtype, x.device)
        y = x.sigmoid()
        xy = (y[..., 0:2] * 2 + grid) * self.stride[level]
        wh = (y[..., 2:4] * 2) ** 2 * anchor_grid
        y = torch.cat((xy, wh, y[..., 4:]), dim=-1)
        return y.view(x.shape[0], self.na * ny * nx, self.no)

    def _make_grid(self, nx: int, ny: int, level: int, dtype: torch.dtype, device: torch.device):
        ys = torch.arange(ny, device=device, dtype=dtype)
        xs = torch.arange(nx, device=device, dtype=dtype)
        yv, xv = torch.meshgrid(ys, xs, indexing="ij")
        # Offset of -0.5 so that (2 * sigmoid - 0.5) spans [-0.5, 1.5] cells around the cell centre.
        grid = torch.stack((xv, yv), dim=2).expand(1, self.na, ny, nx, 2) - 0.5
        anchor_grid = (
            (self.anchors[level] * self.stride[level]).view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
        ).to(dtype)
        return grid, anchor_grid

    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """YOLOv5 priors: ~8 objects per 640x640 image for objectness, 0.6/nc for classes."""
        for conv, stride in zip(self.m, self.stride):
            bias = conv.bias.view(self.na, -1)
            with torch.no_grad():
                bias[:, 4] += math.log(8 / (640 / float(stride)) ** 2)
                if class_frequency is None:
                    bias[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))
                else:
                    bias[:, 5 : 5 + self.nc] += torch.log(class_frequency / class_frequency.sum())
            conv.bias = nn.Parameter(bias.view(-1), requires_grad=True)
