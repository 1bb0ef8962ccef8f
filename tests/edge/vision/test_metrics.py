"""Detection metrics: COCO matching and AP, checked against pycocotools on the same predictions."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from stopsign.edge.vision import metrics as M


def _scene(rng: np.random.Generator, n_images: int, nc: int):
    """Ground truth and noisy predictions (jittered true boxes + random false positives)."""
    scenes = []
    for _ in range(n_images):
        n_gt = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (n_gt, 2))
        wh = rng.uniform(10, 120, (n_gt, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        gt_cls = rng.integers(0, nc, n_gt)
        keep = rng.random(n_gt) < 0.8  # some ground truth is missed
        jitter = rng.normal(0, 6, (n_gt, 4))
        pred = (gt + jitter)[keep]
        pred_cls = gt_cls[keep].copy()
        pred_score = rng.uniform(0.3, 1.0, len(pred))
        n_fp = int(rng.integers(0, 8))
        fxy = rng.uniform(0, 300, (n_fp, 2))
        fp = np.concatenate([fxy, fxy + rng.uniform(5, 80, (n_fp, 2))], 1)
        pred = np.concatenate([pred, fp])
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        pred_cls = np.concatenate([pred_cls, rng.integers(0, nc, n_fp)])
        pred_score = np.concatenate([pred_score, rng.uniform(0.0, 0.9, n_fp)])
        scenes.append(
            (gt.astype(np.float32), gt_cls, pred.astype(np.float32), pred_score.astype(np.float32), pred_cls)
        )
    return scenes


def _ours(scenes, nc):
    matched = [M.match_image(p, s, pc, g, gc) for g, gc, p, s, pc in scenes]
    result = M.compute_metrics(matched, nc)
    return result.map50, result.map


def _pycocotools(scenes, nc):
    coco_mod = pytest.importorskip("pycocotools.coco", reason="pip install pycocotools (dev dependency)")
    cocoeval_mod = pytest.importorskip("pycocotools.cocoeval")
    images, annotations, detections = [], [], []
    for image_id, (gt, gt_cls, pred, score, pred_cls) in enumerate(scenes, start=1):
        images.append({"id": image_id, "width": 640, "height": 640})
        for box, c in zip(gt, gt_cls):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(c) + 1,
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, s, c in zip(pred, score, pred_cls):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(c) + 1,
                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                    "score": float(s),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = coco_mod.COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(nc)],
        }
        coco.createIndex()
        dets = coco.loadRes(detections)
        evaluator = cocoeval_mod.COCOeval(coco, dets, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1]), float(evaluator.stats[0])


@pytest.mark.parametrize(("seed", "nc", "n_images"), [(0, 1, 40), (1, 3, 60), (2, 2, 25)])
def test_map_agrees_with_pycocotools(seed, nc, n_images) -> None:
    scenes = _scene(np.random.default_rng(seed), n_images, nc)
    ours50, ours = _ours(scenes, nc)
    ref50, ref = _pycocotools(scenes, nc)
    assert 0.05 < ref < 0.99  # a non-trivial case
    assert ours50 == pytest.approx(ref50, abs=0.005)
    assert ours == pytest.approx(ref, abs=0.005)


def test_perfect_predictions_score_one() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 50]], np.float32)
    matched = M.match_image(gt, np.array([0.9, 0.8]), np.array([0, 0]), gt, np.array([0, 0]))
    result = M.compute_metrics([matched], 1)
    assert result.map50 == pytest.approx(1.0) and result.map == pytest.approx(1.0)
    assert result.precision == pytest.approx(1.0) and result.recall == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pred", "pred_cls", "expected"),
    [
        (np.zeros((0, 4)), np.zeros(0), [False] * 0),  # nothing predicted
        (np.array([[0, 0, 10, 10]]), np.array([1]), [False]),  # right place, wrong class
        (np.array([[5, 0, 15, 10]]), np.array([0]), [False]),  # IoU 1/3 < 0.5
        (np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0, 0]), [True, False]),  # duplicate
    ],
)
def test_match_edge_cases(pred, pred_cls, expected) -> None:
    gt = np.array([[0, 0, 10, 10]], np.float32)
    score = np.linspace(0.9, 0.5, len(pred))
    matched = M.match_image(pred, score, pred_cls, gt, np.array([0]))
    assert matched.correct[:, 0].tolist() == expected


def test_higher_score_takes_the_ground_truth() -> None:
    gt = np.array([[0, 0, 10, 10]], np.float32)
    pred = np.array([[0, 0, 10, 9], [0, 0, 10, 10]], np.float32)  # the exact box scores lower
    matched = M.match_image(pred, np.array([0.9, 0.4]), np.array([0, 0]), gt, np.array([0]))
    assert matched.correct[:, 0].tolist() == [True, False]


def test_no_ground_truth_means_no_classes() -> None:
    matched = M.match_image(
        np.array([[0, 0, 5, 5]]), np.array([0.9]), np.array([0]), np.zeros((0, 4)), np.zeros(0)
    )
    result = M.compute_metrics([matched], 1)
    assert len(result.classes) == 0 and result.map50 == 0.0


def test_image_fp_rate_and_recall_threshold() -> None:
    max_scores = np.array([0.0, 0.1, 0.3, 0.9])  # four confuser images, one without any detection
    rate = M.image_fp_rate(max_scores)
    assert rate[M.CONF_GRID.searchsorted(0.05)] == pytest.approx(0.75)
    assert rate[M.CONF_GRID.searchsorted(0.5)] == pytest.approx(0.25)
    assert rate[-1] == 0.0
    recall = np.linspace(1.0, 0.0, len(M.CONF_GRID))
    conf, rec, fp = M.recall_threshold_under_fp_rate(recall, rate, 0.02)
    assert conf == pytest.approx(0.901) and fp == 0.0 and rec == pytest.approx(1 - 0.901)
    assert M.recall_threshold_under_fp_rate(recall, np.ones(len(M.CONF_GRID)), 0.02) is None


@pytest.mark.parametrize(
    ("pred", "score", "gt", "expected"),
    [
        ([], [], [[0, 0, 10, 10]], [0.0]),  # no detection
        ([[0, 0, 10, 10]], [0.7], [], []),  # no ground truth
        ([[0, 0, 10, 10]], [0.7], [[0, 0, 10, 10]], [0.7]),  # IoU 1
        ([[20, 20, 30, 30]], [0.7], [[0, 0, 10, 10]], [0.0]),  # IoU 0
        ([[0, 0, 10, 5]], [0.7], [[0, 0, 10, 10]], [0.7]),  # IoU exactly 0.5 counts
        ([[0, 0, 10, 4]], [0.7], [[0, 0, 10, 10]], [0.0]),  # IoU 0.4
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.4, 0.9], [[0, 0, 10, 10]], [0.9]),  # the higher score takes it
        # The top detection overlaps both; it takes the better overlap, the second gets the other.
        ([[0, 0, 10, 10], [0, 0, 12, 10]], [0.9, 0.6], [[0, 0, 12, 10], [0, 0, 10, 10]], [0.6, 0.9]),
    ],
)
def test_gt_match_scores(pred, score, gt, expected) -> None:
    got = M.gt_match_scores(np.array(pred, np.float32), np.array(score), np.array(gt, np.float32))
    np.testing.assert_allclose(got, expected)


def test_gt_match_scores_give_the_recall_of_every_threshold() -> None:
    """Matching once at a low threshold gives, for any c, what matching only the boxes >= c gives."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        gt = rng.uniform(0, 80, (6, 2)).repeat(2, axis=1)[:, [0, 2, 1, 3]] + [0, 0, 20, 20]
        pred = gt[rng.integers(0, 6, 10)] + rng.normal(0, 4, (10, 4))
        score = rng.uniform(0, 1, 10)
        hits = M.gt_match_scores(pred, score, gt)
        for c in (0.1, 0.3, 0.5, 0.8):
            keep = score >= c
            direct = M.gt_match_scores(pred[keep], score[keep], gt) > 0
            assert np.array_equal((hits >= c) & (hits > 0), direct)
            assert M.recall_at(hits, c) == pytest.approx(direct.mean())
    assert np.isnan(M.recall_at(np.zeros(0), 0.5))
