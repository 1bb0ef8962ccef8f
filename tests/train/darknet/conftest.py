"""Helpers for the Darknet tests: small cfgs and seeded random ``.weights`` files the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stopsign.train.darknet.cfg import substitute_classes
from stopsign.train.darknet.model import CFGS_DIR, DarknetModel
from stopsign.train.darknet.weights import WeightsHeader, weights_bytes

FAMILIES = ("yolov4-tiny", "yolov4-tiny-3l", "yolov3-tiny", "yolov3", "yolov4")


def shipped_cfg(family: str, nc: int, size: int | None = None) -> str:
    """The shipped cfg text for ``nc`` classes, optionally at a smaller square input size."""
    text = substitute_classes((CFGS_DIR / f"{family}.cfg").read_text(encoding="utf-8"), nc)
    if size is not None:
        text = text.replace("width=416", f"width={size}").replace("height=416", f"height={size}")
    return text


@torch.no_grad()
def randomize(model: DarknetModel, seed: int) -> DarknetModel:
    """Seeded weights that keep activations of order one through deep nets (He-like scale,
    batch-norm statistics away from the identity so their handling matters)."""
    rng = np.random.default_rng(seed)
    for _, layer in model.conv_layers():
        conv = layer.conv
        fan_in = conv.weight[0].numel()
        conv.weight.copy_(
            torch.from_numpy(rng.normal(0, 1.0 / np.sqrt(fan_in), conv.weight.shape).astype(np.float32))
        )
        if isinstance(layer.bn, nn.BatchNorm2d):
            n = conv.out_channels
            layer.bn.weight.copy_(torch.from_numpy(rng.uniform(0.8, 1.6, n).astype(np.float32)))
            layer.bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, n).astype(np.float32)))
            layer.bn.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.1, n).astype(np.float32)))
            layer.bn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n).astype(np.float32)))
        else:
            conv.bias.copy_(torch.from_numpy(rng.normal(0, 0.3, conv.out_channels).astype(np.float32)))
    return model.eval()


def write_darknet_files(
    folder: Path,
    family: str,
    nc: int = 1,
    size: int | None = 128,
    seed: int = 0,
    header: WeightsHeader | None = None,
) -> tuple[Path, Path, DarknetModel]:
    """``<family>.cfg`` and ``<family>.weights`` (random, seeded) in ``folder``; also the model."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / f"{family}.cfg"
    cfg.write_text(shipped_cfg(family, nc, size), encoding="utf-8")
    model = randomize(DarknetModel(cfg), seed)
    weights = folder / f"{family}.weights"
    weights.write_bytes(weights_bytes(model, header or WeightsHeader(0, 2, 5, 12345)))
    return cfg, weights, model


@pytest.fixture
def tiny_files(tmp_path: Path) -> tuple[Path, Path, DarknetModel]:
    return write_darknet_files(tmp_path / "darknet", "yolov4-tiny", nc=2, size=96)
