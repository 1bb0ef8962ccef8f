"""ModelEMA: the multi-tensor update equals the per-tensor formula, buffers included."""

from __future__ import annotations

import copy
import math

import torch

from stopsign.train.ema import ModelEMA
from stopsign.train.model import build_model


def test_update_blends_every_float_tensor_and_copies_the_rest() -> None:
    torch.manual_seed(0)
    model = build_model("yolov5n", 1)
    ema = ModelEMA(model, decay=0.9, tau=3.0)
    reference = copy.deepcopy(ema.ema)
    for step in range(1, 4):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.01)
        model.train()(torch.rand(2, 3, 64, 64))  # moves BatchNorm running stats and counters
        d = 0.9 * (1 - math.exp(-step / 3.0))
        source = model.state_dict()
        with torch.no_grad():
            for key, value in reference.state_dict().items():
                if value.dtype.is_floating_point:
                    value.mul_(d).add_(source[key], alpha=1 - d)
                else:
                    value.copy_(source[key])
        ema.update(model)
    got, expected = ema.ema.state_dict(), reference.state_dict()
    assert (
        got["model.1.bn.num_batches_tracked"].item()
        == model.state_dict()["model.1.bn.num_batches_tracked"].item()
        > 0
    )
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)
    assert not torch.equal(got["model.1.bn.running_mean"], model.state_dict()["model.1.bn.running_mean"])
