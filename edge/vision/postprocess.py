"""Decode of the YOLOv5 head and class-aware non-maximum suppression, in vectorised numpy.

The raw head of one image is (n, 5 + nc): cx, cy, w, h in network-input pixels, then objectness
and per-class probabilities (sigmoid already applied by the model's Detect layer).
"""

from __future__ import annotations

import functools

import numpy as np

from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.letterbox import LetterboxTransform

# Offsets boxes of different classes so they never overlap: class-aware NMS in one pass.
_CLASS_OFFSET = 8192.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, float32. Zero-area boxes have IoU 0 with everything."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    # In place, and no divide by a zero union: this runs on every frame (NMS, the tracker).
    inter = np.minimum.outer(a[:, 2], b[:, 2]) - np.maximum.outer(a[:, 0], b[:, 0])
    np.maximum(inter, 0, out=inter)
    h = np.minimum.outer(a[:, 3], b[:, 3]) - np.maximum.outer(a[:, 1], b[:, 1])
    np.maximum(h, 0, out=h)
    inter *= h
    union = np.add.outer(area_a, area_b)
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# Up to this many boxes, NMS builds the full IoU matrix and iterates the fixed point (fast for the
# tens of boxes a frame has); above it (validation at conf 0.001 of an untrained model: thousands),
# greedy row by row, which touches only the kept boxes' rows and stops at ``max_keep``.
MATRIX_NMS_MAX_BOXES = 512

MAX_DETECTIONS = 300  # boxes kept per image after NMS (YOLOv5's max_det)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_keep: int | None = None,
) -> np.ndarray:
    """Greedy NMS; returns kept indices ordered by descending score (ties: lower index first).

    Exactly the classic greedy algorithm: a box is dropped when a higher-ranked *kept* box overlaps
    it with IoU > threshold. At most ``max_keep`` indices are returned (the first ones greedy keeps).

    Up to :data:`MATRIX_NMS_MAX_BOXES` boxes it runs without a Python loop over boxes: with ``S``
    the suppression matrix in rank order, ``keep[i] = not any(S[j, i] and keep[j] for j < i)`` has
    the greedy result as its unique fixed point, and iterating it from all-True converges in as
    many steps as the longest suppression chain (a handful in practice). Larger sets go row by row.
    """
    n = len(scores)
    if n <= 1:
        return np.zeros((n,), dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float32)
    if class_ids is not None:
        boxes = boxes + (np.asarray(class_ids, dtype=np.float32) * _CLASS_OFFSET)[:, None]
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked = boxes[order]
    if n > MATRIX_NMS_MAX_BOXES:
        return order[_greedy_rows(ranked, iou_threshold, max_keep)]
    suppresses: np.ndarray = box_iou(ranked, ranked) > iou_threshold
    suppresses &= _strictly_upper(n)
    if not suppresses.any():
        return order[:max_keep]
    keep = np.ones(n, dtype=bool)
    for _ in range(n):  # bounded by the chain length; exits at the fixed point
        new_keep = ~np.asarray((suppresses & keep[:, None]).any(axis=0))
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep][:max_keep]


@functools.lru_cache(maxsize=64)
def _strictly_upper(n: int) -> np.ndarray:
    """(n, n) bool, True above the diagonal: a lower-ranked box never suppresses a higher one.
    Cached (read-only): frames repeat the same few candidate counts."""
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    mask.flags.writeable = False
    return mask


def _greedy_rows(ranked: np.ndarray, iou_threshold: float, max_keep: int | None) -> np.ndarray:
    """Greedy NMS over boxes already in rank order: IoU of each kept box with the boxes after it."""
    x1, y1, x2, y2 = ranked[:, 0], ranked[:, 1], ranked[:, 2], ranked[:, 3]
    area = (x2 - x1) * (y2 - y1)
    alive = np.ones(len(ranked), dtype=bool)
    kept: list[int] = []
    limit = len(ranked) if max_keep is None else max_keep
    if limit <= 0:
        return np.zeros((0,), dtype=np.int64)
    for i in range(len(ranked)):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) >= limit:
            break
        rest = slice(i + 1, None)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = area[i] + area[rest] - inter
        # Same rule as box_iou: a zero union (zero-area pair) is IoU 0, never a suppression.
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = np.where(union > 0, inter / union, 0.0)
        alive[rest] &= ~(overlap > iou_threshold)
    return np.asarray(kept, dtype=np.int64)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    half_w, half_h = xywh[:, 2] / 2, xywh[:, 3] / 2
    out[:, 0] = xywh[:, 0] - half_w
    out[:, 1] = xywh[:, 1] - half_h
    out[:, 2] = xywh[:, 0] + half_w
    out[:, 3] = xywh[:, 1] + half_h
    return out


def decode_yolov5(
    raw: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    transform: LetterboxTransform | None = None,
    max_candidates: int = 4096,
    max_detections: int = MAX_DETECTIONS,
    nms_done: bool = False,
) -> Detections:
    """Raw head of one image (n, 5 + nc) -> Detections after class-aware NMS.

    Score is objectness x best class probability (one label per box, as YOLOv5's default).
    Boxes are mapped to source pixels with ``transform`` when given, else left in input pixels.
    ``nms_done``: the rows were already suppressed (an EfficientNMS_TRT engine): only the
    confidence floor and the ``max_detections`` best are applied.
    """
    if raw.ndim == 3:
        if raw.shape[0] != 1:
            raise ValueError(f"decode_yolov5 takes one image; got a batch of {raw.shape[0]}")
        raw = raw[0]
    if raw.ndim != 2 or raw.shape[1] < 6:
        raise ValueError(f"decode_yolov5: expected (n, 5 + nc) output, got shape {raw.shape}")
    objectness = raw[:, 4]
    # Cheap prefilter on objectness: score = obj * cls <= obj.
    candidates = np.flatnonzero(objectness > conf_threshold)
    if candidates.size == 0:
        return Detections.empty()
    # Each numpy call here is paid cold, right after inference has evicted the caches (~10 us
    # each on the 2-core EPYC, against ~2 hot), so the common cases take the shortest path.
    rows = raw[candidates].astype(np.float32, copy=False)
    if rows.shape[1] == 6:  # one class
        score = rows[:, 4] * rows[:, 5]
        class_id = np.zeros(len(rows), dtype=np.int64)
    else:
        class_probs = rows[:, 5:]
        class_id = class_probs.argmax(axis=1)
        score = rows[:, 4] * class_probs[np.arange(len(rows)), class_id]
    passing = score > conf_threshold
    if not passing.all():
        rows, class_id, score = rows[passing], class_id[passing], score[passing]
    if len(score) > max_candidates:
        top = np.argpartition(-score, max_candidates)[:max_candidates]
        rows, class_id, score = rows[top], class_id[top], score[top]
    xyxy = xywh_to_xyxy(rows[:, :4])
    if nms_done:
        keep = np.argsort(-score, kind="stable")[:max_detections]
    else:
        classes = class_id if raw.shape[1] > 6 else None  # one class: no per-class offsets needed
        keep = nms(xyxy, score, iou_threshold, classes, max_keep=max_detections)
    xyxy = xyxy[keep]
    if transform is not None:
        transform.to_source(xyxy)
    return Detections(xyxy, score[keep], class_id[keep])
