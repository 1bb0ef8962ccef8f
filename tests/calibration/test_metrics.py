"""AP and operating-point metrics on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from stopsign.calibration.metrics import IOU_THRESHOLDS, ImageResult, average_precision, match, summarize

GT = np.array([[0, 0, 10, 10]], np.float32)


def img(dets: list[list[float]], scores: list[float], gt: np.ndarray = GT, role: str = "stop") -> ImageResult:
    return ImageResult(np.array(dets, np.float32).reshape(-1, 4), np.array(scores, np.float32), gt, role)


@pytest.mark.parametrize(
    ("tp", "scores", "n_gt", "expected"),
    [
        ([True], [0.9], 1, 1.0),
        ([False, True], [0.9, 0.8], 1, 0.5),
        ([True, False], [0.9, 0.8], 1, 1.0),
        ([True], [0.9], 2, 51 / 101),  # recall 0.5 reached at precision 1: 51 of 101 samples
        ([], [], 1, 0.0),
    ],
)
def test_average_precision(tp: list[bool], scores: list[float], n_gt: int, expected: float) -> None:
    assert average_precision(np.array(tp, bool), np.array(scores), n_gt) == pytest.approx(expected)


def test_average_precision_without_ground_truth_is_nan() -> None:
    assert np.isnan(average_precision(np.array([True]), np.array([0.9]), 0))


def test_match_one_gt_once_and_by_iou() -> None:
    tp = match(
        np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 7]], np.float32),
        np.array([0.5, 0.9, 0.8]),
        GT,
        IOU_THRESHOLDS,
    )
    assert tp[:, 0].tolist() == [False, True, False]  # the higher-scored duplicate takes the box
    tp_shift = match(np.array([[0, 0, 10, 7.2]], np.float32), np.array([0.9]), GT, IOU_THRESHOLDS)
    assert tp_shift[0].tolist() == [bool(t <= 0.72) for t in IOU_THRESHOLDS]


def test_summarize_counts_confuser_false_positives() -> None:
    empty = np.zeros((0, 4), np.float32)
    results = [
        img([[0, 0, 10, 10]], [0.9]),
        img([[5, 5, 20, 20], [30, 30, 40, 40]], [0.6, 0.1], gt=empty, role="confuser"),
        img([[5, 5, 20, 20]], [0.7], gt=empty, role="negative"),
    ]
    m = summarize(results, threshold=0.5)
    assert m.recall_at_threshold == 1.0 and m.precision_at_threshold == pytest.approx(1 / 3)
    assert (m.confuser_fp, m.confuser_images, m.negative_fp) == (1, 1, 1)
    assert m.map50 == pytest.approx(1.0) and m.n_gt == 1
