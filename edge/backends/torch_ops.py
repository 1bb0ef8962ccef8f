"""Letterbox, decode and NMS as torch ops, so the torch backend keeps a frame on the GPU until the
final boxes. Same arithmetic as :mod:`stopsign.edge.vision.letterbox` and :mod:`stopsign.edge.vision.postprocess`
(numpy), which stay the reference; only the torch backend imports this module (it needs torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stopsign.edge.vision.postprocess import MAX_DETECTIONS

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

    Same fixed-point formulation as :func:`stopsign.edge.vision.postprocess.nms`: with ``S`` the
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
    max_detections: int = MAX_DETECTIONS,
    use_torchvision: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw head of one image (n, 5 + nc) -> (xyxy (k, 4) f32 input px, score (k,) f32, class (k,) i64).

    The same rules as :func:`stopsign.edge.vision.postprocess.decode_yolov5`: score = objectness x best
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


# --- fixed-shape decode: capturable in a CUDA graph -------------------------------------------

FIXED_CANDIDATES = 256  # boxes over the floor that the fixed decode can hold; more -> fallback
FIXED_NMS_ROUNDS = 8  # fixed-point rounds; a longer suppression chain -> fallback


def decode_fixed(
    raw: torch.Tensor,
    conf: torch.Tensor,
    iou: torch.Tensor,
    candidates: int = FIXED_CANDIDATES,
    rounds: int = FIXED_NMS_ROUNDS,
) -> torch.Tensor:
    """Decode + class-aware NMS with shapes that never depend on the data, so that it can be
    captured in a CUDA graph with the model and read back with one copy.

    ``raw``: one image's head (n, 5 + nc); ``conf``, ``iou``: 0-d tensors on its device (a
    captured graph reads their current values). Returns (candidates + 1, 7) float32: rows
    ``x1 y1 x2 y2 score class kept`` in descending score order (ties by row index, as
    :func:`stopsign.edge.vision.postprocess.decode_yolov5`), then ``[passing, converged, 0...]``:
    ``passing`` boxes were over the floor, ``converged`` is 1 when the greedy fixed point was
    reached. The result equals decode_yolov5's when ``passing <= candidates`` and ``converged``;
    otherwise the caller must decode ``raw`` the dynamic way (:func:`decode`).
    """
    raw = raw.float()
    class_prob, class_id = raw[:, 5:].max(dim=1)
    score = raw[:, 4] * class_prob
    over = (raw[:, 4] > conf) & (score > conf)
    ranked = torch.where(over, score, torch.full_like(score, -1.0))
    order = torch.sort(ranked, descending=True, stable=True).indices[:candidates]
    rows, top_score, top_class = raw[order], ranked[order], class_id[order].float()
    valid = top_score > conf
    half = rows[:, 2:4] / 2
    xyxy = torch.cat([rows[:, :2] - half, rows[:, :2] + half], dim=1)
    shifted = xyxy + (top_class * CLASS_OFFSET)[:, None]
    pair = valid[:, None] & valid[None, :]
    suppresses = torch.triu((box_iou(shifted, shifted) > iou) & pair, diagonal=1)
    keep = valid
    previous = keep
    for _ in range(rounds):
        previous, keep = keep, valid & ~(suppresses & keep[:, None]).any(dim=0)
    out = torch.zeros((len(order) + 1, 7), dtype=torch.float32, device=raw.device)
    out[:-1, :4] = xyxy
    out[:-1, 4] = top_score
    out[:-1, 5] = top_class
    out[:-1, 6] = keep.float()
    out[-1, 0] = over.sum().float()
    out[-1, 1] = (previous == keep).all().float()  # no host sync: torch.equal would read it back
    return out


def unpack_fixed(packed: np.ndarray, max_detections: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Host side of :func:`decode_fixed`: (xyxy (k, 4), score (k,), class (k,) int64) of the kept
    rows, best first and at most ``max_detections``; None when the fixed decode cannot stand for
    the dynamic one (more boxes over the floor than it holds, or NMS not converged)."""
    passing, converged = packed[-1, 0], packed[-1, 1]
    if passing > len(packed) - 1 or converged < 0.5:
        return None
    rows = packed[:-1][packed[:-1, 6] > 0.5][:max_detections]
    return np.ascontiguousarray(rows[:, :4]), rows[:, 4].copy(), rows[:, 5].astype(np.int64)
