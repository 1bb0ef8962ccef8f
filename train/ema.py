"""Exponential moving average of model weights (Polyak averaging), as YOLOv5 keeps it.

After ``k`` updates the decay is ``decay * (1 - exp(-k / tau))``: close to 0 at first (the average
follows the model), reaching ``decay`` after a few ``tau`` updates. Floating-point buffers
(BatchNorm running statistics) are averaged too; integer ones are copied.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        self.ema.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates
        self._paired: tuple[nn.Module, list, list, list, list] | None = None

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    def _pairs(self, model: nn.Module) -> tuple[list, list, list, list]:
        """(ema floats, model floats, ema others, model others): the tensors behind both state
        dicts, matched by key once per model (loading a state dict copies in place, so they stay)."""
        if self._paired is None or self._paired[0] is not model:
            source = model.state_dict()
            ema_f, src_f, ema_o, src_o = [], [], [], []
            for key, value in self.ema.state_dict().items():
                floating = value.dtype.is_floating_point
                (ema_f if floating else ema_o).append(value)
                (src_f if floating else src_o).append(source[key].detach())
            self._paired = (model, ema_f, src_f, ema_o, src_o)
        return self._paired[1], self._paired[2], self._paired[3], self._paired[4]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s weights in: ``ema = d * ema + (1 - d) * model``."""
        self.updates += 1
        d = self.current_decay()
        ema_f, src_f, ema_o, src_o = self._pairs(model)
        # A few multi-tensor kernels instead of two per tensor (~700 launches for yolov5n).
        torch._foreach_mul_(ema_f, d)
        torch._foreach_add_(ema_f, src_f, alpha=1 - d)
        for value, source in zip(ema_o, src_o):
            value.copy_(source)
