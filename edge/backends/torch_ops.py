"""Letterbox, decode and NMS as torch ops, so the torch backend keeps a frame on the GPU until the
final boxes. Same arithmetic as :mod:`stopsign.edge.letterbox` and :mod:`stopsign.edge.postprocess`
(numpy), which stay the reference; only the torch backend imports this module (it needs torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Offsets boxes of different classes so they never overlap (as postprocess._CLASS_OFFSET).
CLASS_OFFSET = 8192.0


@dataclass(frozen=True)
class Placement:
    """Where the resized source lands in the network input: rows top..top+height, cols left..left+width."""

    top: int
    left: int
    height: int
    width: int


def fill_padding(network_input: torch.Tensor, pad_value: int, scale: float) -> None:
    """Fill the whole (1, 3, H, W) input with the normalised pad value (done once per source size:
    the letterbox then only ever writes the same centre region)."""
    network_input.fill_(pad_value * scale)


def letterbox_into(
    frame: torch.Tensor, network_input: torch.Tensor, place: Placement, scale: float, rgb: bool
) -> None:
    """(H, W, 3) uint8 BGR frame on the network's device -> the centre region of (1, 3, h, w).

    Channel swap + uint8->float, bilinear resize (half-pixel centres, no antialias: what
    ``cv2.resize(INTER_LINEAR)`` computes, without its 11-bit fixed-point rounding) and the
    multiplication by ``scale`` (written straight into the input's region, in its dtype).
    """
    channels = frame.permute(2, 0, 1)
    if rgb:
        channels = channels.flip(0)
    x = channels.unsqueeze(0).float()
    if x.shape[2:] != (place.height, place.width):
        x = F.interpolate(x, size=(place.height, place.width), mode="bilinear", align_corners=False)
    region = network_input[:, :, place.top : place.top + place.height, place.left : place.left + place.width]
    region.copy_(x.mul_(scale))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (len(a), len(b)) of xyxy boxes; zero-area boxes have IoU 0 with everything."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, class_ids: torch.Tensor
) -> torch.Tensor:
    """Greedy class-aware NMS on the boxes' device; kept indices by descending score.

    Same fixed-point formulation as :func:`stopsign.edge.postprocess.nms`: with ``S`` the
    upper-triangular suppression matrix in rank order, ``keep[i] = not any(S[j, i] and keep[j])``
    iterated from all-True; it converges in as many steps as the longest suppression chain.
    """
    if scores.numel() == 0:
        return torch.zeros((0,), dtype=torch.int64, device=scores.device)
    shifted = boxes.float() + (class_ids.float() * CLASS_OFFSET)[:, None]
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = shifted[order]
    suppresses = torch.triu(box_iou(ranked, ranked) > iou_threshold, diagonal=1)
    keep = torch.ones(len(order), dtype=torch.bool, device=scores.device)
    for _ in range(len(order)):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def torchvision_nms_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    class_ids: torch.Tensor,
    use_torchvision: bool,
) -> torch.Tensor:
    """torchvision's NMS kernel when asked (it is one kernel on CUDA), else :func:`nms`."""
    if use_torchvision:
        from torchvision.ops import batched_nms as tv_batched_nms

        return tv_batched_nms(boxes.float(), scores.float(), class_ids, iou_threshold)
    return nms(boxes, scores, iou_threshold, class_ids)


def decode(
    raw: torch.Tensor,
    conf_threshold: float,
    iou_threshold: float,
    max_candidates: int = 4096,
    max_detections: int = 300,
    use_torchvision: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw head of one image (n, 5 + nc) -> (xyxy (k, 4) f32 input px, score (k,) f32, class (k,) i64).

    The same rules as :func:`stopsign.edge.postprocess.decode_yolov5`: score = objectness x best
    class probability, kept when > ``conf_threshold``, at most ``max_candidates`` into class-aware
    NMS, at most ``max_detections`` out; all on ``raw``'s device.
    """
    raw = raw.float()
    rows = raw[raw[:, 4] > conf_threshold]
    class_prob, class_id = rows[:, 5:].max(dim=1)
    score = rows[:, 4] * class_prob
    passing = score > conf_threshold
    rows, class_id, score = rows[passing], class_id[passing], score[passing]
    if len(score) > max_candidates:
        top = torch.topk(score, max_candidates).indices
        rows, class_id, score = rows[top], class_id[top], score[top]
    half = rows[:, 2:4] / 2
    xyxy = torch.cat([rows[:, :2] - half, rows[:, :2] + half], dim=1)
    keep = batched_nms(xyxy, score, iou_threshold, class_id, use_torchvision)[:max_detections]
    return xyxy[keep], score[keep], class_id[keep]
