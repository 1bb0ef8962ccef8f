"""Optimizer groups, schedules, warm-up, accumulation, EMA, devices and initial weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stopsign.train.checkpoint import save_checkpoint, spec_for_model
from stopsign.train.config import Hyp
from stopsign.train.devices import DeviceError, resolve_device
from stopsign.train.ema import ModelEMA
from stopsign.train.model import build_model
from stopsign.train.optim import (
    accumulation_steps,
    apply_schedule,
    build_optimizer,
    lr_factor,
    parameter_groups,
)
from stopsign.train.weights import build_initial_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model("yolov5n", 1)


def test_three_groups_cover_every_parameter_once(model) -> None:
    groups = parameter_groups(model)
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(p.ndim == 1 for p in groups["bias"] + groups["no_decay"])
    assert all(p.ndim == 4 for p in groups["decay"])


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_optimizer_groups(model, name: str) -> None:
    optimizer = build_optimizer(model, name, Hyp(), weight_decay=5e-4)
    assert [g["name"] for g in optimizer.param_groups] == ["bias", "decay", "no_decay"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 5e-4, 0.0]
    if name == "SGD":
        assert optimizer.param_groups[1]["nesterov"] and optimizer.param_groups[1]["momentum"] == 0.937


@pytest.mark.parametrize(
    ("cosine", "epoch", "expected"),
    [
        (False, 0, 1.0),
        (False, 50, 0.505),
        (False, 100, 0.01),
        (True, 0, 1.0),
        (True, 50, 0.505),
        (True, 100, 0.01),
    ],
)
def test_lr_factor(cosine: bool, epoch: int, expected: float) -> None:
    assert lr_factor(100, 0.01, cosine)(epoch) == pytest.approx(expected)


def test_warmup_moves_bias_down_and_weights_up(model) -> None:
    hyp = Hyp()
    optimizer = build_optimizer(model, "SGD", hyp, 5e-4)
    apply_schedule(optimizer, hyp, factor=1.0, iteration=0, warmup_iters=100)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.0, 0.0])
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)
    apply_schedule(optimizer, hyp, factor=1.0, iteration=50, warmup_iters=100)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.055, 0.005, 0.005])
    apply_schedule(optimizer, hyp, factor=0.5, iteration=100, warmup_iters=100)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005] * 3)


@pytest.mark.parametrize(
    ("batch", "iteration", "expected"),
    [(16, 0, 1), (16, 50, 2), (16, 100, 4), (16, 500, 4), (64, 0, 1), (128, 500, 1)],
)
def test_accumulation_to_nominal_batch(batch: int, iteration: int, expected: int) -> None:
    assert accumulation_steps(batch, 64, iteration, warmup_iters=100) == expected


def test_ema_ramps_and_follows() -> None:
    net = torch.nn.Linear(2, 1)
    ema = ModelEMA(net, decay=0.9999, tau=2000)
    assert ema.current_decay() == 0.0
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)  # decay after one update is ~5e-4: the average nearly copies
    assert torch.allclose(ema.ema.weight, torch.ones(1, 2), atol=1e-3)
    ema.updates = 100000
    assert ema.current_decay() == pytest.approx(0.9999, rel=1e-6)


@pytest.mark.parametrize(("text", "device"), [("cpu", "cpu"), ("CPU", "cpu")])
def test_resolve_device(text: str, device: str) -> None:
    plan = resolve_device(text)
    assert plan.device.type == device and not plan.distributed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
@pytest.mark.parametrize("text", ["0", "0,1", "cuda", "cuda:0"])
def test_gpu_ids_without_cuda_are_clear_errors(text: str) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(text)


def test_bad_device_text() -> None:
    with pytest.raises(DeviceError, match="expected cpu, cuda"):
        resolve_device("gpu")


def test_weights_with_other_class_count_reinitialise_the_head(tmp_path: Path) -> None:
    source = build_model("yolov5n", 3)
    folder = save_checkpoint(tmp_path / "ckpt", source, spec_for_model(source, ["a", "b", "c"], 64))
    messages: list[str] = []
    model = build_initial_model("", str(folder), nc=1, log=messages.append)
    assert model.nc == 1 and model.name == "yolov5n"
    assert any("detection head is re-initialised" in m for m in messages)
    same = build_initial_model("yolov5n", str(folder), nc=3, log=messages.append)
    assert torch.equal(same.state_dict()["model.0.conv.weight"], source.state_dict()["model.0.conv.weight"])
    assert torch.equal(same.detect.m[0].weight, source.detect.m[0].weight)


def test_weights_or_cfg_required() -> None:
    with pytest.raises(ValueError, match="give --cfg"):
        build_initial_model("", "", nc=1)
