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

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s weights in: ``ema = d * ema + (1 - d) * model``."""
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for key, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[key].detach(), alpha=1 - d)
            else:
                value.copy_(source[key])
