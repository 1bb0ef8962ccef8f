"""YOLOv5's training loss, written from its published formulation.

Per output level ``i`` with prediction maps ``p_i`` (batch, anchors, ny, nx, 5 + nc) of logits:

* Targets are assigned to anchors whose shape is close: ``max(r, 1/r) < anchor_t`` for both side
  ratios ``r = target_wh / anchor_wh`` (grid units). Each match is assigned to its own cell and to
  the up-to-two neighbouring cells whose shared edge is nearest to the target centre (fractional
  part below ``g = 0.5``), tripling the positives.
* Box: predicted ``xy = 2 sigmoid(t_xy) - 0.5`` (offset in the cell), ``wh = (2 sigmoid(t_wh))^2 *
  anchor``; loss ``mean(1 - CIoU(pred, target))`` over the positives.
* Objectness: BCE over every cell and anchor; the target of a positive is its (detached, clamped
  at 0) IoU (``gr = 1``), 0 elsewhere. Weighted per level by ``balance = [4.0, 1.0, 0.4]``.
* Class: BCE over positives with one-hot targets (smoothed by ``label_smoothing``), only when nc > 1.
* Total ``(box * l_box + obj * l_obj + cls * l_cls) * batch``, with the gains scaled by
  :func:`scaled_gains` (3 / levels, (img / 640)^2 for objectness, nc / 80 for classes).

References: YOLOv5 (Jocher et al., 2020); CIoU: Zheng et al., "Distance-IoU Loss", AAAI 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from stopsign.train.config import Hyp
from stopsign.train.model.yolo import YoloModel

# Cell offsets, in order: own cell, left (-x), up (-y), right (+x), down (+y), times g = 0.5.
NEIGHBOUR_BIAS = 0.5
_OFFSETS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
_BALANCE = {3: (4.0, 1.0, 0.4)}
_BALANCE_DEFAULT = (4.0, 1.0, 0.25, 0.06, 0.02)
EPS = 1e-7


@dataclass(frozen=True)
class LossGains:
    box: float
    obj: float
    cls: float


def scaled_gains(hyp: Hyp, num_levels: int, nc: int, img: int) -> LossGains:
    """YOLOv5's gain scaling: hyp gains are tuned for 3 levels, 80 classes and 640 px."""
    level_factor = 3.0 / num_levels
    return LossGains(
        box=hyp.box * level_factor,
        obj=hyp.obj * (img / 640) ** 2 * level_factor,
        cls=hyp.cls * nc / 80 * level_factor,
    )


def ciou(pred_xywh: torch.Tensor, target_xywh: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Complete IoU of (n, 4) centre-size boxes, element-wise -> (n,).

    ``CIoU = IoU - rho^2 / c^2 - alpha * v`` with rho the centre distance, c the diagonal of the
    smallest enclosing box, ``v = 4 / pi^2 (atan(w_t / h_t) - atan(w_p / h_p))^2`` and
    ``alpha = v / (v - IoU + 1)`` (no gradient through alpha). ``eps`` keeps the union and the
    diagonal away from 0; heights must be positive (the loss's predicted and target boxes are).
    """
    px, py, pw, ph = pred_xywh.unbind(-1)
    tx, ty, tw, th = target_xywh.unbind(-1)
    p_x1, p_x2, p_y1, p_y2 = px - pw / 2, px + pw / 2, py - ph / 2, py + ph / 2
    t_x1, t_x2, t_y1, t_y2 = tx - tw / 2, tx + tw / 2, ty - th / 2, ty + th / 2
    inter_w = (torch.minimum(p_x2, t_x2) - torch.maximum(p_x1, t_x1)).clamp(0)
    inter_h = (torch.minimum(p_y2, t_y2) - torch.maximum(p_y1, t_y1)).clamp(0)
    inter = inter_w * inter_h
    union = pw * ph + tw * th - inter + eps
    iou = inter / union
    hull_w = torch.maximum(p_x2, t_x2) - torch.minimum(p_x1, t_x1)
    hull_h = torch.maximum(p_y2, t_y2) - torch.minimum(p_y1, t_y1)
    diagonal_sq = hull_w**2 + hull_h**2 + eps
    centre_sq = ((t_x1 + t_x2 - p_x1 - p_x2) ** 2 + (t_y1 + t_y2 - p_y1 - p_y2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(tw / th) - torch.atan(pw / ph)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre_sq / diagonal_sq + v * alpha)


class FocalBCE(nn.Module):
    """BCE-with-logits scaled by ``alpha_t (1 - p_t)^gamma`` (Lin et al., 2017), mean-reduced."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float, alpha: float = 0.25):
        super().__init__()
        self.bce, self.gamma, self.alpha = bce, gamma, alpha
        self.bce.reduction = "none"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.bce(logits, target)
        p = torch.sigmoid(logits)
        p_t = target * p + (1 - target) * (1 - p)
        alpha_t = target * self.alpha + (1 - target) * (1 - self.alpha)
        return (loss * alpha_t * (1.0 - p_t) ** self.gamma).mean()


@dataclass
class LevelTargets:
    """Positives of one level: image, anchor, grid row, grid column (each (m,)), class (m,),
    box (m, 4) as xy offset from the cell corner + wh in grid units, and the anchor wh (m, 2)."""

    image: torch.Tensor
    anchor: torch.Tensor
    gy: torch.Tensor
    gx: torch.Tensor
    cls: torch.Tensor
    box: torch.Tensor
    anchor_wh: torch.Tensor


BoxDecoder = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def yolov5_box(
    logits: torch.Tensor, anchor_wh: torch.Tensor, level: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv5's decode: xy in [-0.5, 1.5] cells around the cell corner, wh up to 4x the anchor."""
    xy = logits[:, :2].sigmoid() * 2 - 0.5
    wh = (logits[:, 2:4].sigmoid() * 2) ** 2 * anchor_wh
    return xy, wh


class YoloLoss:
    """Callable ``(per-level maps, targets (n, 6) image cls cx cy w h normalised) -> (loss, items)``.

    ``loss`` is the scalar to back-propagate (already multiplied by the batch size);
    ``items`` is the detached (box, obj, cls) triple for logging.
    """

    def __init__(
        self,
        anchors: torch.Tensor,
        nc: int,
        hyp: Hyp,
        img: int,
        strides: list[float] | None = None,
        box_decoder: BoxDecoder | None = None,
        neighbours: bool = True,
    ):
        """``anchors``: (levels, anchors per level, 2) in grid units of each level (Detect.anchors).

        ``strides``: per level, when the levels are not in ascending stride order (Darknet's
        yolov3 lists stride 32 first): the objectness balance follows the stride, not the index.
        ``box_decoder``: ``(logits (m, 4), anchor_wh (m, 2), level) -> (xy, wh)`` in grid units
        relative to the cell, the decode the model's head uses (YOLOv5's when None).
        ``neighbours``: also assign each target to the two nearest neighbouring cells (YOLOv5);
        only meaningful when the decode reaches half a cell beyond its own.
        """
        self.anchors = anchors.detach()
        self.nl, self.na = anchors.shape[:2]
        self.nc = nc
        self.anchor_t = hyp.anchor_t
        self.gains = scaled_gains(hyp, self.nl, nc, img)
        balance = _BALANCE.get(self.nl, _BALANCE_DEFAULT[: self.nl])
        if strides is not None:  # rank by stride: the finest level gets the first weight
            order = sorted(range(self.nl), key=lambda level: strides[level])
            ranked = list(balance)
            balance = tuple(ranked[order.index(level)] for level in range(self.nl))
        self.balance = balance
        self.box_decoder = box_decoder or yolov5_box
        self.neighbours = neighbours
        self.gr = 1.0
        self.positive, self.negative = 1.0 - 0.5 * hyp.label_smoothing, 0.5 * hyp.label_smoothing
        device = anchors.device
        cls_bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp.cls_pw], device=device))
        obj_bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp.obj_pw], device=device))
        self.cls_loss: nn.Module = FocalBCE(cls_bce, hyp.fl_gamma) if hyp.fl_gamma > 0 else cls_bce
        self.obj_loss: nn.Module = FocalBCE(obj_bce, hyp.fl_gamma) if hyp.fl_gamma > 0 else obj_bce

    @classmethod
    def for_model(cls, model: YoloModel, hyp: Hyp, img: int) -> YoloLoss:
        detect = model.detect
        decoder = getattr(detect, "box_in_cell", None)  # Darknet heads decode their own way
        if decoder is None:
            return cls(detect.anchors, detect.nc, hyp, img)
        strides = [float(s) for s in detect.stride.tolist()]
        return cls(
            detect.anchors, detect.nc, hyp, img, strides, decoder, neighbours=detect.reaches_neighbours
        )

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = preds[0].device
        box_loss = torch.zeros(1, device=device)
        obj_loss = torch.zeros(1, device=device)
        cls_loss = torch.zeros(1, device=device)
        for level, (pred, t) in enumerate(zip(preds, self.assign(preds, targets))):
            obj_target = torch.zeros(pred.shape[:4], dtype=pred.dtype, device=device)
            if len(t.image):
                picked = pred[t.image, t.anchor, t.gy, t.gx]  # (m, 5 + nc)
                xy, wh = self.box_decoder(picked[:, :4], t.anchor_wh, level)
                iou = ciou(torch.cat((xy, wh), 1), t.box)
                box_loss += (1.0 - iou).mean()
                quality = iou.detach().clamp(0).to(obj_target.dtype)
                obj_target[t.image, t.anchor, t.gy, t.gx] = (1.0 - self.gr) + self.gr * quality
                if self.nc > 1:
                    cls_target = torch.full_like(picked[:, 5:], self.negative)
                    cls_target[torch.arange(len(t.cls), device=device), t.cls] = self.positive
                    cls_loss += self.cls_loss(picked[:, 5:], cls_target)
            obj_loss += self.obj_loss(pred[..., 4], obj_target) * self.balance[level]
        box_loss *= self.gains.box
        obj_loss *= self.gains.obj
        cls_loss *= self.gains.cls
        batch = preds[0].shape[0]
        return (box_loss + obj_loss + cls_loss) * batch, torch.cat((box_loss, obj_loss, cls_loss)).detach()

    def assign(self, preds: list[torch.Tensor], targets: torch.Tensor) -> list[LevelTargets]:
        """Anchor and cell assignment of ``targets`` (n, 6) for every level (see module docstring)."""
        device = targets.device
        offsets = torch.tensor(_OFFSETS, device=device) * NEIGHBOUR_BIAS
        n = targets.shape[0]
        out = []
        for level, pred in enumerate(preds):
            ny, nx = pred.shape[2], pred.shape[3]
            anchors = self.anchors[level].to(device)  # (na, 2)
            grid_size = torch.tensor([nx, ny], device=device, dtype=targets.dtype)
            # Every (anchor, target) pair, anchor-major: a0t0, a0t1, ..., a1t0, ...
            anchor_id = torch.arange(self.na, device=device).repeat_interleave(n)
            rows = targets.repeat(self.na, 1)
            gxy = rows[:, 2:4] * grid_size
            gwh = rows[:, 4:6] * grid_size
            ratio = gwh / anchors[anchor_id]
            close = torch.maximum(ratio, 1 / ratio).max(1).values < self.anchor_t
            anchor_id, rows, gxy, gwh = anchor_id[close], rows[close], gxy[close], gwh[close]
            # Neighbours: the cell whose edge is within half a cell of the centre, away from the border.
            from_far = grid_size - gxy
            near_low = (gxy % 1 < NEIGHBOUR_BIAS) & (gxy > 1)  # left (x), up (y)
            near_high = (from_far % 1 < NEIGHBOUR_BIAS) & (from_far > 1)  # right (x), down (y)
            use = torch.stack(
                (
                    torch.ones_like(near_low[:, 0]),
                    near_low[:, 0],
                    near_low[:, 1],
                    near_high[:, 0],
                    near_high[:, 1],
                )
            )  # (5, m)
            if not self.neighbours:
                use[1:] = False
            shift = offsets[:, None, :].expand(5, len(gxy), 2)[use]
            anchor_id = anchor_id.expand(5, -1)[use]
            rows = rows.expand(5, -1, -1)[use]
            gxy_all = gxy.expand(5, -1, -1)[use]
            gwh = gwh.expand(5, -1, -1)[use]
            cell = (gxy_all - shift).long()
            cell[:, 0].clamp_(0, nx - 1)
            cell[:, 1].clamp_(0, ny - 1)
            out.append(
                LevelTargets(
                    image=rows[:, 0].long(),
                    anchor=anchor_id,
                    gy=cell[:, 1],
                    gx=cell[:, 0],
                    cls=rows[:, 1].long(),
                    box=torch.cat((gxy_all - cell, gwh), 1),
                    anchor_wh=anchors[anchor_id],
                )
            )
        return out
