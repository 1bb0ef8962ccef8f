"""Validation: run a model over a split, match with ground truth, derive metrics and thresholds.

Detections go through the runtime's own decode + NMS (``stopsign.edge.vision.postprocess``) and are scored
in network-input pixels (letterboxed), where ground truth is mapped too. Thresholds:

* F1-optimal: the confidence maximising the class-mean F1 at IoU 0.5.
* Confuser-constrained: the lowest confidence (highest recall) at which fewer than ``max_fp_rate``
  of the confuser images (look-alikes without stop signs; all negative images when the data has
  no confuser role) get any detection.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision import metrics as M
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.train.dataset import Split

NEGATIVE_ROLES = ("negative", "confuser")


@dataclass
class ImageRecord:
    """What validation keeps of one image: its match, highest score and detection scores."""

    index: int
    matched: M.MatchedImage
    max_score: float
    # Per ground truth: longer side in network pixels, and the score of the detection that
    # matched it at IoU 0.5 (0 when none): recall by sign size at any threshold.
    gt_size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    gt_hit: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass
class EvalResult:
    metrics: M.DetectionMetrics
    records: list[ImageRecord]
    losses: np.ndarray | None  # (3,) box, obj, cls mean per batch
    fp_rate_curve: np.ndarray  # (G,) image FP rate of the confuser basis over CONF_GRID
    fp_basis: str  # "confuser", "negative" or "" (no images without ground truth)
    confuser_threshold: tuple[float, float, float] | None  # (conf, recall, fp rate)
    ms_per_image: float
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    negatives: dict[str, dict[str, Any]] = field(default_factory=dict)

    def threshold(self, choice: str | float) -> float:
        """``f1``, ``confuser`` (see the module docstring) or a fixed confidence."""
        if isinstance(choice, float):
            return choice
        if choice == "f1":
            return self.metrics.best_conf
        if choice == "confuser":
            if self.confuser_threshold is None:
                raise ValueError("no confidence keeps the confuser FP rate under the limit (or no confusers)")
            return self.confuser_threshold[0]
        raise ValueError(f"threshold choice must be 'f1' or 'confuser', got {choice!r}")

    def small_signs(self, threshold: float) -> tuple[float, int]:
        """(recall, count) of the signs under ``M.SMALL_SIGN_PX`` in the network input at
        ``threshold``; recall is nan when the split has none."""
        sizes = np.concatenate([r.gt_size for r in self.records] or [np.zeros(0)])
        hits = np.concatenate([r.gt_hit for r in self.records] or [np.zeros(0)])
        small = hits[sizes < M.SMALL_SIGN_PX]
        return M.recall_at(small, threshold), len(small)

    def confuser_fp_rate(self, threshold: float) -> float:
        """Share of the FP-basis images (confusers, else all images without signs) with a box at
        ``threshold``; nan when there are none."""
        if not self.fp_basis:
            return float("nan")
        return float(np.interp(threshold, M.CONF_GRID, self.fp_rate_curve))

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics (what goes into ModelSpec.metrics)."""
        m = self.metrics
        recall_small, small = self.small_signs(m.best_conf)
        out: dict[str, Any] = {
            "precision": round(m.precision, 5),
            "recall": round(m.recall, 5),
            "map50": round(m.map50, 5),
            "map50_95": round(m.map, 5),
            "threshold_f1": round(m.best_conf, 4),
            "f1": round(m.f1, 5),
            "images": len(self.records),
            "instances": int(m.n_gt.sum()),
            # At the F1 threshold, signs under SMALL_SIGN_PX px (None: the split has none).
            "recall_small": round(recall_small, 5) if small else None,
            "instances_small": small,
        }
        if self.fp_basis:
            # At the F1 threshold, share of the fp_basis images with any box.
            out["fp_image_rate"] = round(self.confuser_fp_rate(m.best_conf), 5)
        if self.confuser_threshold is not None:
            conf, recall, rate = self.confuser_threshold
            out["threshold_confuser_fp"] = {
                "conf": round(conf, 4),
                "recall": round(recall, 5),
                "fp_rate": rate,
            }
        out["fp_basis"] = self.fp_basis
        if self.per_source:
            out["per_source"] = self.per_source
        if self.negatives:
            out["negatives"] = self.negatives
        return out


def fitness(map50: float, map50_95: float) -> float:
    """Model selection score: 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95."""
    return 0.1 * map50 + 0.9 * map50_95


@torch.no_grad()
def predict_and_match(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    conf: float = 0.001,
    iou: float = 0.6,
    loss_fn: Any = None,
    amp: bool = False,
    max_det: int = 300,
    desc: str = "val",
    show_progress: bool = True,
) -> tuple[list[ImageRecord], np.ndarray | None, float]:
    """Forward every batch, decode + NMS per image, match with ground truth (network pixels).
    ``show_progress``: a progress bar (DDP: rank 0 only, or every rank draws its own)."""
    was_training = model.training
    model.eval()
    records: list[ImageRecord] = []
    loss_sum, batches, seconds = torch.zeros(3), 0, 0.0
    bar = tqdm(loader, desc=desc, leave=False, unit="batch", disable=not show_progress)
    for images, targets, indices in bar:
        start = time.perf_counter()
        x = images.to(device, non_blocking=True).float() / 255
        size = x.shape[-1]
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            decoded, maps = model(x)
        if loss_fn is not None:
            loss_sum += loss_fn([m.float() for m in maps], targets.to(device))[1].cpu()
            batches += 1
        raw = decoded.float().cpu().numpy()
        seconds += time.perf_counter() - start
        for b, index in enumerate(indices):
            det = decode_yolov5(raw[b], conf, iou, None, max_candidates=2048, max_detections=max_det)
            gt = targets[targets[:, 0] == b, 1:].numpy()
            gt_xyxy = np.stack(
                [
                    (gt[:, 1] - gt[:, 3] / 2) * size,
                    (gt[:, 2] - gt[:, 4] / 2) * size,
                    (gt[:, 1] + gt[:, 3] / 2) * size,
                    (gt[:, 2] + gt[:, 4] / 2) * size,
                ],
                axis=1,
            )
            matched = M.match_image(det.xyxy, det.score, det.class_id, gt_xyxy, gt[:, 0])
            top = float(det.score.max()) if len(det.score) else 0.0
            gt_size = np.maximum(gt[:, 3], gt[:, 4]).astype(np.float32) * size
            hit = M.gt_match_scores(det.xyxy, det.score, gt_xyxy)
            records.append(ImageRecord(int(index), matched, top, gt_size, hit))
    model.train(was_training)
    losses = (loss_sum / max(batches, 1)).numpy() if loss_fn is not None else None
    return records, losses, 1000 * seconds / max(len(records), 1)


def _fp_at(records: list[ImageRecord], threshold: float) -> dict[str, Any]:
    boxes = sum(int((r.matched.score >= threshold).sum()) for r in records)
    flagged = sum(r.max_score >= threshold and r.max_score > 0 for r in records)
    return {
        "images": len(records),
        "images_with_fp": int(flagged),
        "fp_boxes": boxes,
        "image_fp_rate": round(flagged / len(records), 5) if records else 0.0,
    }


def summarise(
    records: list[ImageRecord],
    split: Split,
    nc: int,
    losses: np.ndarray | None = None,
    ms_per_image: float = 0.0,
    max_fp_rate: float = 0.02,
    operating: str | float = "f1",
) -> EvalResult:
    """Metrics, thresholds, per-source breakdown and false positives on images without signs."""
    metrics = M.compute_metrics([r.matched for r in records], nc)
    roles = [split.roles[r.index] if split.roles else "" for r in records]
    confusers = [r for r, role in zip(records, roles) if role == "confuser"]
    negatives = [r for r in records if len(r.matched.gt_cls) == 0]
    basis, pool = (
        ("confuser", confusers) if confusers else (("negative", negatives) if negatives else ("", []))
    )
    rate = M.image_fp_rate(np.array([r.max_score for r in pool]))
    recall = metrics.recall_curve.mean(0) if len(metrics.classes) else np.zeros(len(M.CONF_GRID))
    constrained = M.recall_threshold_under_fp_rate(recall, rate, max_fp_rate) if pool else None
    result = EvalResult(metrics, records, losses, rate, basis, constrained, ms_per_image)
    if isinstance(operating, float):
        threshold = operating
    else:
        threshold = metrics.best_conf if operating == "f1" or constrained is None else constrained[0]
    by_role: dict[str, list[ImageRecord]] = defaultdict(list)
    for record, role in zip(records, roles):
        if len(record.matched.gt_cls) == 0:
            by_role[role or "negative"].append(record)
    result.negatives = {
        role: {"threshold": round(threshold, 4), **_fp_at(rs, threshold)} for role, rs in by_role.items()
    }
    by_source: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        source = split.sources[record.index] if split.sources else ""
        by_source[source or "unknown"].append(record)
    if len(by_source) > 1 or "unknown" not in by_source:
        for source, rs in sorted(by_source.items()):
            sub = M.compute_metrics([r.matched for r in rs], nc)
            p, r = sub.at_conf(threshold)
            result.per_source[source] = {
                "images": len(rs),
                "instances": int(sub.n_gt.sum()),
                "map50": round(sub.map50, 5),
                "map50_95": round(sub.map, 5),
                "precision": round(p, 5),
                "recall": round(r, 5),
                "fp_images": _fp_at([x for x in rs if len(x.matched.gt_cls) == 0], threshold),
            }
    return result


def spec_with_result(spec: ModelSpec, result: EvalResult, operating: str | float = "f1") -> ModelSpec:
    """``spec`` with ``operating_threshold`` (F1-optimal, confuser-constrained or fixed), the
    metrics, and precision and recall at that threshold."""
    threshold = result.threshold(operating)
    metrics = dict(spec.metrics)
    metrics.update(result.summary())
    metrics["operating_threshold_rule"] = "fixed" if isinstance(operating, float) else operating
    precision, recall = result.metrics.at_conf(threshold)
    metrics["operating_point"] = {
        "conf": round(float(threshold), 4),
        "precision": round(float(precision), 5),
        "recall": round(float(recall), 5),
    }
    return spec.replace(operating_threshold=round(float(threshold), 4), metrics=metrics)


def format_result(result: EvalResult, names: list[str]) -> str:
    """Human-readable table: overall and per-class, then per-source and thresholds."""
    m = result.metrics
    lines = [f"{'class':>16} {'images':>7} {'labels':>7} {'P':>7} {'R':>7} {'mAP50':>7} {'mAP50-95':>9}"]
    lines.append(
        f"{'all':>16} {len(result.records):>7} {int(m.n_gt.sum()):>7} {m.precision:>7.3f} {m.recall:>7.3f} "
        f"{m.map50:>7.3f} {m.map:>9.3f}"
    )
    if len(m.classes) > 1:
        best = int(np.searchsorted(M.CONF_GRID, m.best_conf))
        for row, c in enumerate(m.classes):
            lines.append(
                f"{names[c]:>16} {'':>7} {int(m.n_gt[row]):>7} {m.precision_curve[row, best]:>7.3f} "
                f"{m.recall_curve[row, best]:>7.3f} {m.ap[row, 0]:>7.3f} {m.ap[row].mean():>9.3f}"
            )
    for source, s in result.per_source.items():
        lines.append(
            f"  source {source}: {s['images']} images, {s['instances']} labels, mAP50 {s['map50']:.3f}, "
            f"mAP50-95 {s['map50_95']:.3f}, P {s['precision']:.3f}, R {s['recall']:.3f}, "
            f"FP images {s['fp_images']['images_with_fp']}/{s['fp_images']['images']}"
        )
    for role, s in result.negatives.items():
        lines.append(
            f"  {role} images: {s['images_with_fp']}/{s['images']} with a detection >= {s['threshold']:.3f} "
            f"({s['fp_boxes']} boxes)"
        )
    lines.append(f"  F1-optimal threshold {m.best_conf:.3f} (F1 {m.f1:.3f})")
    if result.confuser_threshold is not None:
        conf, recall, rate = result.confuser_threshold
        lines.append(
            f"  max-recall threshold with {result.fp_basis} FP rate < limit: {conf:.3f} (recall {recall:.3f}, FP rate {rate:.3f})"
        )
    elif result.fp_basis:
        lines.append(f"  no threshold keeps the {result.fp_basis} FP rate under the limit")
    else:
        lines.append("  no negative or confuser images: FP-rate threshold not computed")
    lines.append(f"  {result.ms_per_image:.1f} ms/image (forward + transfer)")
    return "\n".join(lines)
