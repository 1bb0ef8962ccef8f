"""NMS and decode: vectorised NMS against a plain greedy reference on thousands of random sets."""

from __future__ import annotations

import numpy as np
import pytest

from stopsign.edge.vision.letterbox import compute_transform
from stopsign.edge.vision.postprocess import box_iou, decode_yolov5, nms


def reference_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, class_ids: np.ndarray
) -> list[int]:
    """The textbook greedy loop, written for clarity, not speed."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in order:
        suppressed = False
        for j in kept:
            if class_ids[i] != class_ids[j]:
                continue
            x1, y1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x2, y2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            union = area_i + area_j - inter
            if union > 0 and inter / union > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept


def random_boxes(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    xy = rng.uniform(0, spread, size=(n, 2)).astype(np.float32)
    wh = rng.uniform(1, 60, size=(n, 2)).astype(np.float32)
    return np.concatenate([xy, xy + wh], axis=1)


def test_nms_matches_reference_on_random_sets() -> None:
    rng = np.random.default_rng(0)
    for trial in range(2000):
        n = int(rng.integers(0, 60))
        boxes = random_boxes(rng, n, spread=float(rng.choice([20, 100, 400])))
        # Quantised scores create ties on purpose: order must then follow the index.
        scores = np.round(rng.uniform(0, 1, n), 2).astype(np.float32)
        classes = rng.integers(0, 3, n)
        threshold = float(rng.choice([0.0, 0.3, 0.45, 0.7, 1.0]))
        got = nms(boxes, scores, threshold, classes).tolist()
        assert got == reference_nms(boxes, scores, threshold, classes), f"trial {trial}"


def test_nms_matches_torchvision_when_installed() -> None:
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is optional, not a dependency")
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 80))
        boxes = random_boxes(rng, n, 150)
        scores = rng.permutation(n).astype(np.float32) / n  # distinct scores: tie order is backend-specific
        classes = rng.integers(0, 2, n)
        expected = ops.batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.45
        )
        assert nms(boxes, scores, 0.45, classes).tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # identical
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),  # disjoint
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # half overlap
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # zero area: no division by zero
    ],
)
def test_box_iou_edge_cases(a: list[float], b: list[float], expected: float) -> None:
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("threshold", "kept"),
    [(1.0, [0, 1]), (0.99, [0]), (0.0, [0])],  # IoU exactly 1 is suppressed only when threshold < 1
)
def test_nms_iou_threshold_boundaries(threshold: float, kept: list[int]) -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8], np.float32), threshold).tolist() == kept


def test_nms_empty_and_class_awareness() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5, np.array([0, 1])).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5, np.array([1, 1])).tolist() == [0]


def head_row(cx: float, cy: float, w: float, h: float, obj: float, *cls: float) -> list[float]:
    return [cx, cy, w, h, obj, *cls]


def test_decode_scores_thresholds_and_maps_to_source() -> None:
    raw = np.array(
        [
            head_row(208, 208, 40, 40, 0.9, 0.9),  # score 0.81: kept
            head_row(210, 208, 40, 40, 0.8, 0.9),  # overlaps the first: suppressed
            head_row(50, 50, 10, 10, 0.5, 0.4),  # score 0.2: below conf
        ],
        np.float32,
    )[None]
    transform, _ = compute_transform((208, 416), (416, 416))  # 2:1 image, padded top and bottom
    dets = decode_yolov5(raw, conf_threshold=0.25, iou_threshold=0.45, transform=transform)
    assert len(dets) == 1
    assert dets.score[0] == pytest.approx(0.81)
    # Centre (208, 208) in input pixels is the centre of the 416x208 source.
    x1, y1, x2, y2 = dets.xyxy[0]
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == pytest.approx((208, 104))
    assert x2 - x1 == pytest.approx(40)


def test_decode_empty_and_bad_shape() -> None:
    assert len(decode_yolov5(np.zeros((10, 6), np.float32))) == 0
    with pytest.raises(ValueError, match="expected"):
        decode_yolov5(np.zeros((10, 4), np.float32))
    with pytest.raises(ValueError, match="batch"):
        decode_yolov5(np.zeros((2, 10, 6), np.float32))


@pytest.mark.parametrize("n", [513, 900, 2048])
@pytest.mark.parametrize("max_keep", [None, 0, 1, 300])
def test_nms_row_by_row_path_equals_the_matrix_path(monkeypatch, n: int, max_keep: int | None) -> None:
    """Above MATRIX_NMS_MAX_BOXES the greedy runs row by row; it must keep exactly the same boxes."""
    from stopsign.edge.vision import postprocess

    rng = np.random.default_rng(n)
    boxes = random_boxes(rng, n, spread=200)  # dense: long suppression chains
    scores = np.round(rng.uniform(0, 1, n), 2).astype(np.float32)  # ties on purpose
    classes = rng.integers(0, 2, n)
    row_by_row = nms(boxes, scores, 0.5, classes, max_keep=max_keep)
    monkeypatch.setattr(postprocess, "MATRIX_NMS_MAX_BOXES", 10**6)
    matrix = nms(boxes, scores, 0.5, classes, max_keep=max_keep)
    assert row_by_row.tolist() == matrix.tolist()
    assert max_keep is None or len(row_by_row) == min(max_keep, len(nms(boxes, scores, 0.5, classes)))


@pytest.mark.parametrize("max_keep,expected", [(None, [0, 2]), (0, []), (1, [0]), (5, [0, 2])])
def test_nms_max_keep_takes_the_first_kept_boxes(max_keep: int | None, expected: list[int]) -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5, max_keep=max_keep).tolist() == expected


def test_decode_of_already_suppressed_rows_keeps_overlaps() -> None:
    """An EfficientNMS engine's rows: no second NMS, only the floor and the best max_detections."""
    raw = np.array(
        [[50, 50, 20, 20, 0.9, 1.0], [51, 50, 20, 20, 0.8, 1.0], [50, 50, 20, 20, 0.1, 1.0]], np.float32
    )
    assert len(decode_yolov5(raw, 0.25, 0.45)) == 1
    kept = decode_yolov5(raw, 0.25, 0.45, nms_done=True)
    assert kept.score.tolist() == pytest.approx([0.9, 0.8])
    assert len(decode_yolov5(raw, 0.25, 0.45, nms_done=True, max_detections=1)) == 1
