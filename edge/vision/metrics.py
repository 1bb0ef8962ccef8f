"""Detection metrics in plain numpy: COCO-style matching and AP, P/R/F1 versus confidence.

Used by training validation and by drive replay, so both report the same numbers. Matching and
AP follow the COCO evaluation (greedy by score, each detection takes the unmatched ground truth
of its class with the highest IoU at or above the threshold; AP = mean interpolated precision
at 101 recall points), so mAP agrees with pycocotools on the same detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stopsign.edge.vision.postprocess import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's 0.50:0.05:0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
CONF_GRID = np.linspace(0.0, 1.0, 1001)


@dataclass
class MatchedImage:
    """Detections of one image scored against its ground truth.

    correct: (n, T) bool, detection i is a true positive at IoU threshold t.
    score: (n,) confidence; pred_cls: (n,) class ids; gt_cls: (m,) ground-truth class ids.
    """

    correct: np.ndarray
    score: np.ndarray
    pred_cls: np.ndarray
    gt_cls: np.ndarray


def match_image(
    pred_xyxy: np.ndarray,
    score: np.ndarray,
    pred_cls: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_cls: np.ndarray,
    iou_thresholds: np.ndarray = IOU_THRESHOLDS,
) -> MatchedImage:
    """COCO matching of one image's detections (boxes xyxy, same pixel frame) to its ground truth."""
    pred_xyxy = np.asarray(pred_xyxy, np.float32).reshape(-1, 4)
    gt_xyxy = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    score = np.asarray(score, np.float32).reshape(-1)
    pred_cls = np.asarray(pred_cls).reshape(-1).astype(np.int64)
    gt_cls = np.asarray(gt_cls).reshape(-1).astype(np.int64)
    thresholds = np.asarray(iou_thresholds, np.float64)
    n, t = len(score), len(thresholds)
    correct = np.zeros((n, t), bool)
    if n and len(gt_cls):
        iou = box_iou(pred_xyxy, gt_xyxy).astype(np.float64)
        iou[pred_cls[:, None] != gt_cls[None, :]] = -1.0  # other classes never match
        order = np.argsort(-score, kind="mergesort")
        taken = np.zeros((t, len(gt_cls)), bool)
        # Only detections overlapping some ground truth at the lowest threshold can ever match.
        candidates = order[(iou[order] >= min(thresholds.min(), 1 - 1e-10)).any(axis=1)]
        for d in candidates:
            for k, threshold in enumerate(thresholds):
                ious = np.where(taken[k], -1.0, iou[d])
                best = int(np.argmax(ious[::-1]))  # the last index among equal maxima, as COCO does
                best = len(ious) - 1 - best
                if ious[best] >= min(threshold, 1 - 1e-10):
                    taken[k, best] = True
                    correct[d, k] = True
    return MatchedImage(correct, score, pred_cls, gt_cls)


SMALL_SIGN_PX = 32  # a sign whose longer side is under this in the network input counts as small


def gt_match_scores(
    pred_xyxy: np.ndarray, score: np.ndarray, gt_xyxy: np.ndarray, iou_threshold: float = 0.5
) -> np.ndarray:
    """(m,) for each ground truth, the score of the detection that matched it at IoU >= the
    threshold (greedy by descending score, class-agnostic), or 0 when none did.

    Greedy matching by score is prefix-stable: the matches of the detections scoring >= c are
    the same whether or not the lower ones exist, so ``gt_match_scores(...) >= c`` is exactly
    which ground truths a threshold of c recalls, for every c at once.
    """
    gt_xyxy = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    pred_xyxy = np.asarray(pred_xyxy, np.float32).reshape(-1, 4)
    score = np.asarray(score, np.float32).reshape(-1)
    hit = np.zeros(len(gt_xyxy), np.float32)
    if len(score) == 0 or len(gt_xyxy) == 0:
        return hit
    order = np.argsort(-score, kind="mergesort")
    iou = box_iou(pred_xyxy[order], gt_xyxy)
    taken = np.zeros(len(gt_xyxy), bool)
    for row, d in zip(iou, order):
        candidates = np.where(taken, -1.0, row)
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            taken[best] = True
            hit[best] = score[d]
            if taken.all():
                break
    return hit


def recall_at(hit_scores: np.ndarray, threshold: float) -> float:
    """Share of ground truths (their :func:`gt_match_scores`) found at ``threshold``; nan for none."""
    hit_scores = np.asarray(hit_scores, np.float64).reshape(-1)
    if len(hit_scores) == 0:
        return float("nan")
    return float(np.mean((hit_scores >= threshold) & (hit_scores > 0)))


def coco_ap(tp: np.ndarray, n_gt: int) -> float:
    """AP of detections already sorted by descending score: ``tp`` (n,) bool, ``n_gt`` > 0."""
    if len(tp) == 0:
        return 0.0
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_cum / n_gt
    precision = tp_cum / (tp_cum + fp_cum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope from the right
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(sampled.mean())


@dataclass
class DetectionMetrics:
    """Dataset-level metrics. Per-class arrays are over ``classes`` (classes with ground truth).

    ap: (k, T) AP per class and IoU threshold. n_gt: (k,). Curves at IoU 0.5 over ``CONF_GRID``:
    precision (k, G), recall (k, G), f1 (k, G). ``best_conf`` maximises the class-mean F1;
    precision/recall/f1 are class means at ``best_conf``.
    """

    classes: np.ndarray
    ap: np.ndarray
    n_gt: np.ndarray
    precision_curve: np.ndarray
    recall_curve: np.ndarray
    f1_curve: np.ndarray
    best_conf: float
    precision: float
    recall: float
    f1: float

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if len(self.ap) else 0.0

    @property
    def map(self) -> float:
        return float(self.ap.mean()) if len(self.ap) else 0.0

    def at_conf(self, conf: float) -> tuple[float, float]:
        """(class-mean precision, class-mean recall) at confidence ``conf``."""
        i = int(np.clip(np.searchsorted(CONF_GRID, conf, side="left"), 0, len(CONF_GRID) - 1))
        if not len(self.classes):
            return 0.0, 0.0
        return float(self.precision_curve[:, i].mean()), float(self.recall_curve[:, i].mean())


def _curves(tp: np.ndarray, score: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of detections with score >= c for every c of CONF_GRID."""
    order = np.argsort(-score, kind="mergesort")
    tp_cum = np.concatenate([[0.0], np.cumsum(tp[order], dtype=np.float64)])
    ascending = score[order][::-1]
    # Number of detections with score >= c.
    kept = len(score) - np.searchsorted(ascending, CONF_GRID, side="left")
    tps = tp_cum[kept]
    precision = np.where(kept > 0, tps / np.maximum(kept, 1), 1.0)
    recall = tps / max(n_gt, 1)
    return precision, recall


def compute_metrics(images: list[MatchedImage], nc: int) -> DetectionMetrics:
    """Pool matched images into AP per class and P/R/F1 curves (IoU 0.5)."""
    t = len(IOU_THRESHOLDS) if not images else images[0].correct.shape[1]
    correct = np.concatenate([m.correct for m in images], 0) if images else np.zeros((0, t), bool)
    score = np.concatenate([m.score for m in images]) if images else np.zeros(0, np.float32)
    pred_cls = np.concatenate([m.pred_cls for m in images]) if images else np.zeros(0, np.int64)
    gt_cls = np.concatenate([m.gt_cls for m in images]) if images else np.zeros(0, np.int64)
    classes = np.array([c for c in range(nc) if (gt_cls == c).any()], np.int64)
    ap = np.zeros((len(classes), t))
    n_gt = np.zeros(len(classes), np.int64)
    grid = len(CONF_GRID)
    p_curve, r_curve = np.ones((len(classes), grid)), np.zeros((len(classes), grid))
    for row, c in enumerate(classes):
        mine = pred_cls == c
        n_gt[row] = int((gt_cls == c).sum())
        order = np.argsort(-score[mine], kind="mergesort")
        hits = correct[mine][order]
        ap[row] = [coco_ap(hits[:, k], n_gt[row]) for k in range(t)]
        p_curve[row], r_curve[row] = _curves(correct[mine][:, 0], score[mine], n_gt[row])
    f1 = 2 * p_curve * r_curve / np.maximum(p_curve + r_curve, 1e-16)
    mean_f1 = f1.mean(0) if len(classes) else np.zeros(grid)
    best = int(np.argmax(mean_f1))
    return DetectionMetrics(
        classes=classes,
        ap=ap,
        n_gt=n_gt,
        precision_curve=p_curve,
        recall_curve=r_curve,
        f1_curve=f1,
        best_conf=float(CONF_GRID[best]),
        precision=float(p_curve[:, best].mean()) if len(classes) else 0.0,
        recall=float(r_curve[:, best].mean()) if len(classes) else 0.0,
        f1=float(mean_f1[best]),
    )


def image_fp_rate(max_scores: np.ndarray) -> np.ndarray:
    """Fraction of images (all without ground truth) with any detection scoring >= c, per CONF_GRID c.

    ``max_scores``: (n,) highest detection score of each image (0 when it had none).
    """
    max_scores = np.asarray(max_scores, np.float64)
    if len(max_scores) == 0:
        return np.zeros(len(CONF_GRID))
    ascending = np.sort(max_scores)
    flagged = len(ascending) - np.searchsorted(ascending, CONF_GRID, side="left")
    flagged = np.where(CONF_GRID > 0, flagged, np.count_nonzero(ascending > 0))
    return flagged / len(ascending)


def recall_threshold_under_fp_rate(
    recall_curve: np.ndarray, fp_rate: np.ndarray, max_rate: float
) -> tuple[float, float, float] | None:
    """Lowest confidence (so highest recall) whose image FP rate is strictly below ``max_rate``.

    ``recall_curve`` (G,) and ``fp_rate`` (G,) are over CONF_GRID. Returns (conf, recall, fp rate),
    or None when no confidence meets the bound.
    """
    ok = np.flatnonzero(fp_rate < max_rate)
    if not len(ok):
        return None
    i = int(ok[0])
    return float(CONF_GRID[i]), float(recall_curve[i]), float(fp_rate[i])
