"""Hard-example mining: which training images does a model get wrong?

A fine-tuning stage that repeats these images spends its few epochs where the model errs (the
shipped model's third stage, ``recipes/shipped_model/finetune_hard.sh``). Only a train list is
ever read, so the validation split stays unseen.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.edge.vision.postprocess import box_iou
from stopsign.train.data.layout import yolo_to_xyxy
from stopsign.train.dataset import read_labels

FP_IOU = 0.3  # a box this far from every stop sign is a false positive, not a loose true one
HIT_IOU = 0.5  # a sign needs a box this close to count as found

Detector = Callable[[np.ndarray], np.ndarray]  # BGR image -> (n, 4) xyxy pixels of confident boxes


def image_errors(gt_xyxy: np.ndarray, det_xyxy: np.ndarray) -> tuple[int, int]:
    """(false positive boxes, missed signs) of one image; ``det_xyxy`` holds only confident boxes."""
    if len(gt_xyxy) == 0:
        return len(det_xyxy), 0
    if len(det_xyxy) == 0:
        return 0, len(gt_xyxy)
    iou = box_iou(gt_xyxy, det_xyxy)
    return int((iou.max(0) < FP_IOU).sum()), int((iou.max(1) < HIT_IOU).sum())


@dataclass
class MiningResult:
    hard: list[str] = field(default_factory=list)  # list lines, as in the train list
    tally: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self, n_images: int) -> str:
        return (
            f"{len(self.hard)} of {n_images} images are hard: {self.tally['false_positives']} false positive "
            f"boxes, {self.tally['missed']} of {self.tally['signs']} signs missed"
        )


def mine_hard_examples(root: Path, lines: Iterable[str], detect: Detector, nc: int = 1) -> MiningResult:
    """Run ``detect`` on every listed image (paths relative to ``root``) and keep those with an error."""
    result = MiningResult()
    for line in tqdm(list(lines), desc="mine", unit="img"):
        path = root / line
        image = cv2.imread(str(path))
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        h, w = image.shape[:2]
        gt = yolo_to_xyxy(read_labels(path, nc)[:, 1:], w, h)
        false_positives, missed = image_errors(gt, detect(image))
        result.tally.update(false_positives=false_positives, missed=missed, signs=len(gt))
        if false_positives or missed:
            result.hard.append(line)
    return result
