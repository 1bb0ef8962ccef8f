"""Optimizer with YOLOv5's three parameter groups, learning-rate schedules and warm-up.

Groups (in this order): ``bias`` (all biases, no decay), ``decay`` (conv/linear weights, weight
decay), ``no_decay`` (normalisation weights). Warm-up raises the bias learning rate *down* from
``warmup_bias_lr`` and the others *up* from 0, while momentum rises from ``warmup_momentum``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from stopsign.train.config import Hyp

GROUP_NAMES = ("bias", "decay", "no_decay")


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    norm_types = (nn.BatchNorm2d, nn.BatchNorm1d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias":
                groups["bias"].append(param)
            elif name == "weight" and isinstance(module, norm_types):
                groups["no_decay"].append(param)
            else:
                groups["decay"].append(param)
    return groups


def build_optimizer(model: nn.Module, name: str, hyp: Hyp, weight_decay: float) -> torch.optim.Optimizer:
    """SGD (nesterov) or AdamW over the three groups; ``weight_decay`` already scaled to the batch."""
    groups = parameter_groups(model)
    specs = [
        {"params": groups["bias"], "name": "bias", "weight_decay": 0.0},
        {"params": groups["decay"], "name": "decay", "weight_decay": weight_decay},
        {"params": groups["no_decay"], "name": "no_decay", "weight_decay": 0.0},
    ]
    if name == "SGD":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            specs, lr=hyp.lr0, momentum=hyp.momentum, nesterov=True
        )
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(specs, lr=hyp.lr0, betas=(hyp.momentum, 0.999))
    else:
        raise ValueError(f"optimizer must be SGD or AdamW, got {name!r}")
    for group in optimizer.param_groups:
        group["initial_lr"] = hyp.lr0
    return optimizer


def lr_factor(epochs: int, lrf: float, cosine: bool) -> Callable[[int], float]:
    """Multiplier of lr0 at epoch e (0-based): linear or cosine from 1 down to ``lrf``."""
    if cosine:
        return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda e: (1 - e / epochs) * (1.0 - lrf) + lrf


def set_momentum(group: dict, value: float) -> None:
    if "betas" in group:
        group["betas"] = (value, group["betas"][1])
    else:
        group["momentum"] = value


def apply_schedule(
    optimizer: torch.optim.Optimizer,
    hyp: Hyp,
    factor: float,
    iteration: int,
    warmup_iters: int,
) -> None:
    """Set each group's lr (and momentum during warm-up) for this iteration of the epoch.

    ``factor`` is the epoch's schedule multiplier; ``iteration`` counts batches from the start.
    """
    for group in optimizer.param_groups:
        target = group["initial_lr"] * factor
        if iteration < warmup_iters:
            start = hyp.warmup_bias_lr if group.get("name") == "bias" else 0.0
            group["lr"] = float(np.interp(iteration, [0, warmup_iters], [start, target]))
            set_momentum(
                group, float(np.interp(iteration, [0, warmup_iters], [hyp.warmup_momentum, hyp.momentum]))
            )
        else:
            group["lr"] = target


def accumulation_steps(batch: int, nbs: int, iteration: int, warmup_iters: int) -> int:
    """Micro-batches per optimizer step: ramps from 1 to nbs / batch over the warm-up."""
    full = max(round(nbs / batch), 1)
    if iteration < warmup_iters:
        return max(1, round(float(np.interp(iteration, [0, warmup_iters], [1, nbs / batch]))))
    return full
