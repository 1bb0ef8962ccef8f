"""Helpers for the Darknet tests (here and in tests/edge, tests/export, tests/calibration): the
shipped cfgs at small sizes, and seeded random ``.weights`` files the tests write themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
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
def randomize(model: DarknetModel, seed: int, calibration: np.ndarray | None = None) -> DarknetModel:
    """Seeded weights that keep activations of order one through deep nets.

    Convolutions get He-like random weights; every batch norm then takes its statistics from one
    forward pass over seeded noise, so it really normalises (yolov3's 23 residual blocks would
    otherwise overflow), and gets a random scale and shift so its four vectors all matter.
    ``calibration``: the (n, 3, H, W) input of that pass (seeded uniform noise when None); deep
    nets calibrated on noise overflow on photos, so the photo tests calibrate on photos.
    """
    rng = np.random.default_rng(seed)

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.astype(np.float32))

    batch_norms = []
    for _, layer in model.conv_layers():
        conv = layer.conv
        fan_in = conv.weight[0].numel()
        conv.weight.copy_(tensor(rng.normal(0, 1.0 / np.sqrt(fan_in), conv.weight.shape)))
        if isinstance(layer.bn, nn.BatchNorm2d):
            n = conv.out_channels
            layer.bn.weight.copy_(tensor(rng.uniform(0.6, 1.2, n)))
            layer.bn.bias.copy_(tensor(rng.normal(0, 0.2, n)))
            layer.bn.reset_running_stats()
            layer.bn.momentum = None  # cumulative: one pass sets the statistics of that pass
            batch_norms.append(layer.bn)
        else:
            conv.bias.copy_(tensor(rng.normal(0, 0.3, conv.out_channels)))
    h, w = model.input_size
    model.train()
    if calibration is None:
        calibration = rng.uniform(0, 1, (2, model.in_channels, h, w))
    model(tensor(calibration))
    for bn in batch_norms:
        bn.momentum = 0.03
        # A floor on the variance: a channel that barely varied on the calibration images would
        # otherwise amplify float32 rounding ~1000x through yolov4's 110 convolutions (float32
        # and float64 runs of the same net then differ by 1e-3); with it they agree to ~1e-6.
        bn.running_var.add_(0.5 * bn.running_var.mean())
    return model.eval()


def write_darknet_files(
    folder: Path,
    family: str,
    nc: int = 1,
    size: int | None = 128,
    seed: int = 0,
    header: WeightsHeader | None = None,
    calibration: np.ndarray | None = None,
    edit: Callable[[str], str] | None = None,
) -> tuple[Path, Path, DarknetModel]:
    """``<family>.cfg`` (the shipped one, through ``edit`` when given) and ``<family>.weights``
    (random, seeded) in ``folder``; also the model."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / f"{family}.cfg"
    text = shipped_cfg(family, nc, size)
    cfg.write_text(edit(text) if edit else text, encoding="utf-8")
    model = randomize(DarknetModel(cfg), seed, calibration)
    weights = folder / f"{family}.weights"
    weights.write_bytes(weights_bytes(model, header or WeightsHeader(0, 2, 5, 12345)))
    return cfg, weights, model


def darknet_onnx(folder: Path, family: str = "yolov4-tiny", size: int = 128, seed: int = 5) -> Path:
    """A random one-class Darknet model imported (``folder/ckpt``) and exported (``folder/<family>.onnx``)."""
    from stopsign.export.onnx_export import export_checkpoint
    from stopsign.train.darknet.import_cmd import import_darknet

    cfg, weights, _ = write_darknet_files(folder / "dn", family, nc=1, size=size, seed=seed)
    names = folder / "obj.names"
    names.write_text("stop_sign\n")
    checkpoint = import_darknet(cfg, weights, folder / "ckpt", names)
    return export_checkpoint(checkpoint, folder / f"{family}.onnx", size)
