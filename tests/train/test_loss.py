"""YOLOv5 loss: CIoU, gain scaling, anchor/cell assignment and whole-loss values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from stopsign.train.config import Hyp
from stopsign.train.loss import YoloLoss, ciou, scaled_gains

# One level, 8x8 grid, one anchor of 2x2 cells: small enough to reason about by hand.
ANCHORS_1L = torch.tensor([[[2.0, 2.0]]])


def _loss(nc: int = 1, anchors: torch.Tensor = ANCHORS_1L, **hyp) -> YoloLoss:
    return YoloLoss(anchors, nc, Hyp(**hyp), img=640)


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        # identical boxes: IoU 1, no centre distance, same aspect
        ((0.5, 0.5, 1.0, 1.0), (0.5, 0.5, 1.0, 1.0), 1.0),
        # same centre, half width: IoU 0.5; v = 4/pi^2 (atan 1 - atan 0.5)^2, alpha = v / (v + 0.5)
        ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.5, 1.0), None),
        # disjoint squares side 1, centres 2 apart: IoU 0, rho^2 = 4, c^2 = 3^2 + 1^2 = 10
        ((0.0, 0.0, 1.0, 1.0), (2.0, 0.0, 1.0, 1.0), -0.4),
    ],
)
def test_ciou_hand_cases(pred, target, expected) -> None:
    value = float(ciou(torch.tensor([pred]), torch.tensor([target]))[0])
    if expected is None:
        v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(0.5)) ** 2
        expected = 0.5 - v * v / (v - 0.5 + 1)
    assert value == pytest.approx(expected, abs=1e-6)


def test_ciou_gradient_does_not_flow_through_alpha() -> None:
    pred = torch.tensor([[0.1, 0.0, 1.0, 2.0]], requires_grad=True)
    ciou(pred, torch.tensor([[0.0, 0.0, 1.0, 1.0]])).sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize(
    ("levels", "nc", "img", "box", "obj", "cls"),
    [
        (3, 80, 640, 0.05, 1.0, 0.5),  # YOLOv5's reference setting: unchanged
        (3, 1, 416, 0.05, (416 / 640) ** 2, 0.5 / 80),  # the report's setting
        (1, 2, 320, 0.15, 0.75, 0.5 * 2 / 80 * 3),
    ],
)
def test_gain_scaling(levels, nc, img, box, obj, cls) -> None:
    gains = scaled_gains(Hyp(), levels, nc, img)
    assert (gains.box, gains.obj, gains.cls) == pytest.approx((box, obj, cls))


def _cells(loss: YoloLoss, target: list[float], grid: int = 8) -> set[tuple[int, int, int]]:
    pred = torch.zeros(1, loss.na, grid, grid, 6)
    t = loss.assign([pred], torch.tensor([target]))[0]
    return {(int(a), int(y), int(x)) for a, y, x in zip(t.anchor, t.gy, t.gx)}


@pytest.mark.parametrize(
    ("cx", "cy", "cells"),
    [
        # centre at (3.25, 3.25) cells: own cell + left (frac < 0.5) + up
        (3.25 / 8, 3.25 / 8, {(0, 3, 3), (0, 3, 2), (0, 2, 3)}),
        # (3.75, 3.75): own + right + down
        (3.75 / 8, 3.75 / 8, {(0, 3, 3), (0, 3, 4), (0, 4, 3)}),
        # (0.25, 0.25): left/up neighbours would leave the grid (x > 1 fails): own only... and none else
        (0.25 / 8, 0.25 / 8, {(0, 0, 0)}),
        # (7.75, 3.25): right neighbour would leave the grid (8 - x = 0.25 < 1)
        (7.75 / 8, 3.25 / 8, {(0, 3, 7), (0, 2, 7)}),
    ],
)
def test_neighbour_cells(cx, cy, cells) -> None:
    assert _cells(_loss(), [0, 0, cx, cy, 2 / 8, 2 / 8]) == cells


@pytest.mark.parametrize(
    ("wh_cells", "matched"),
    [(2.0, True), (7.9, True), (8.0, False), (0.51, True), (0.5, False)],  # anchor 2: ratio must be < 4
)
def test_anchor_ratio_threshold(wh_cells, matched) -> None:
    cells = _cells(_loss(), [0, 0, 3.25 / 8, 3.25 / 8, wh_cells / 8, 2 / 8])
    assert bool(cells) is matched


def test_assignment_box_is_offset_from_the_assigned_cell() -> None:
    loss = _loss()
    pred = torch.zeros(1, 1, 8, 8, 6)
    t = loss.assign([pred], torch.tensor([[0, 0, 3.25 / 8, 3.25 / 8, 2 / 8, 2 / 8]]))[0]
    boxes = {(int(y), int(x)): b.tolist() for y, x, b in zip(t.gy, t.gx, t.box)}
    assert boxes[(3, 3)] == pytest.approx([0.25, 0.25, 2, 2])
    assert boxes[(3, 2)] == pytest.approx([1.25, 0.25, 2, 2])  # left neighbour: offset 1.25 (< 1.5 reachable)
    assert boxes[(2, 3)] == pytest.approx([0.25, 1.25, 2, 2])


def test_no_targets_gives_objectness_only() -> None:
    # All-zero logits and no targets: BCE(0, 0) = log 2 per cell; obj gain (640 px, 1 level) = 3.
    loss = _loss()
    pred = torch.zeros(2, 1, 8, 8, 6)
    total, items = loss([pred], torch.zeros(0, 6))
    gain = 1.0 * 3.0  # obj * 3 / levels at img 640
    balance = 4.0  # first entry of the 5-level default balance list for one level
    assert items.tolist() == pytest.approx([0.0, math.log(2) * balance * gain, 0.0])
    assert float(total) == pytest.approx(2 * math.log(2) * balance * gain)


def test_one_perfect_target_hand_computed() -> None:
    # Logits chosen so the predicted box equals the target in the own cell:
    # xy = 2 sigmoid(t) - 0.5 = 0.25 -> sigmoid(t) = 0.375; wh = (2 sigmoid(t))^2 * 2 = 2 -> t = 0.
    loss = _loss(nc=2)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    pred = torch.zeros(1, 1, 8, 8, 7)
    for y, x in ((3, 3), (3, 2), (2, 3)):
        pred[0, 0, y, x, :2] = logit(0.375)
    target = torch.tensor([[0, 1, 3.25 / 8, 3.25 / 8, 2 / 8, 2 / 8]])
    total, items = loss([pred], target)
    # Box: the own cell is perfect (CIoU 1); neighbours predict offset 0.25 but the target is 1.25
    # cells away on one axis: two equal boxes shifted by 1 cell: IoU 1/3, rho^2 = 1, c^2 = 3^2 + 2^2.
    shifted = 1 / 3 - 1 / 13
    box = (0 + 2 * (1 - shifted)) / 3 * 0.05 * 3
    # Objectness: 64 cells, targets at three cells = their clamped CIoU, zero logits elsewhere.
    bce0 = math.log(2)

    def bce(target_value: float) -> float:
        return -(target_value * math.log(0.5) + (1 - target_value) * math.log(0.5))

    obj = (61 * bce0 + bce(1.0) + 2 * bce(shifted)) / 64 * 4.0 * 3.0
    # Class: logits 0 vs one-hot [0, 1]: BCE log 2 for both entries, averaged.
    cls = math.log(2) * 0.5 * 2 / 80 * 3
    assert items.tolist() == pytest.approx([box, obj, cls], rel=1e-5)
    assert float(total) == pytest.approx(box + obj + cls, rel=1e-5)


def test_label_smoothing_targets() -> None:
    loss = _loss(nc=3, label_smoothing=0.1)
    assert (loss.positive, loss.negative) == pytest.approx((0.95, 0.05))


def test_focal_gamma_switches_loss() -> None:
    plain, focal = _loss(), _loss(fl_gamma=1.5)
    pred = torch.randn(1, 1, 8, 8, 6)
    a = plain([pred], torch.zeros(0, 6))[1][1]
    b = focal([pred], torch.zeros(0, 6))[1][1]
    assert float(b) < float(a)
