"""Detection metrics for the precision report: AP at IoU thresholds, recall at a confidence.

A small local implementation (``stopsign.edge.vision.metrics`` did not exist when this was written):
greedy matching per image in descending score order, each ground-truth box matched at most once
per IoU threshold, AP as the area under the precision envelope sampled at 101 recall points
(the COCO convention). All boxes are xyxy in the same pixel frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stopsign.edge.vision.postprocess import box_iou

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)  # 0.50, 0.55, ..., 0.95


@dataclass
class ImageResult:
    """Detections and ground truth of one image (class-agnostic: the project has one class).

    Attributes:
        det_xyxy: (n, 4) float32 detections, source pixels. det_score: (n,) in [0, 1].
        gt_xyxy: (m, 4) float32 ground-truth boxes, source pixels.
        role: the image's dataset role ("stop", "confuser", "negative", "unlabelled").
    """

    det_xyxy: np.ndarray
    det_score: np.ndarray
    gt_xyxy: np.ndarray
    role: str


def match(
    det_xyxy: np.ndarray, det_score: np.ndarray, gt_xyxy: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """True positives (n_det, n_thr): greedy by score, one ground truth per detection per threshold."""
    tp = np.zeros((len(det_score), len(thresholds)), dtype=bool)
    if len(det_score) == 0 or len(gt_xyxy) == 0:
        return tp
    order = np.argsort(-det_score, kind="stable")
    iou = box_iou(det_xyxy[order], gt_xyxy)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gt_xyxy), dtype=bool)
        for rank, det in enumerate(order):
            candidates = np.where(~taken, iou[rank], -1.0)
            best = int(candidates.argmax())
            if candidates[best] >= threshold:
                taken[best] = True
                tp[det, t] = True
    return tp


def average_precision(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    """AP of one threshold from pooled detections: tp (n,) bool, scores (n,), n_gt ground truths."""
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = tp[order].astype(np.float64)
    cum_tp = np.cumsum(hits)
    recall = cum_tp / n_gt
    precision = cum_tp / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at recall >= r
    samples = np.linspace(0.0, 1.0, 101)
    index = np.searchsorted(recall, samples, side="left")
    values = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
    return float(values.mean())


@dataclass
class DetectionMetrics:
    """Summary over a validation set; recall/FP at the operating threshold use IoU 0.5."""

    map50: float
    map50_95: float
    recall_at_threshold: float
    precision_at_threshold: float
    confuser_fp: int
    confuser_images: int
    negative_fp: int
    n_images: int
    n_gt: int


def summarize(results: list[ImageResult], threshold: float) -> DetectionMetrics:
    """mAP@0.5, mAP@0.5:0.95, and recall / precision / false positives at ``threshold``."""
    all_tp, all_scores = [], []
    n_gt = 0
    tp_at, det_at, confuser_fp, negative_fp = 0, 0, 0, 0
    for image in results:
        tp = match(image.det_xyxy, image.det_score, image.gt_xyxy, IOU_THRESHOLDS)
        all_tp.append(tp)
        all_scores.append(image.det_score)
        n_gt += len(image.gt_xyxy)
        keep = image.det_score >= threshold
        kept = match(image.det_xyxy[keep], image.det_score[keep], image.gt_xyxy, IOU_THRESHOLDS[:1])[:, 0]
        tp_at += int(kept.sum())
        det_at += int(keep.sum())
        false_pos = int((~kept).sum())
        if image.role == "confuser":
            confuser_fp += false_pos
        elif image.role == "negative":
            negative_fp += false_pos
    tp_all = np.concatenate(all_tp) if all_tp else np.zeros((0, len(IOU_THRESHOLDS)), bool)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    aps = [average_precision(tp_all[:, t], scores, n_gt) for t in range(len(IOU_THRESHOLDS))]
    return DetectionMetrics(
        map50=aps[0],
        map50_95=float(np.mean(aps)),
        recall_at_threshold=tp_at / n_gt if n_gt else float("nan"),
        precision_at_threshold=tp_at / det_at if det_at else float("nan"),
        confuser_fp=confuser_fp,
        confuser_images=sum(1 for r in results if r.role == "confuser"),
        negative_fp=negative_fp,
        n_images=len(results),
        n_gt=n_gt,
    )
