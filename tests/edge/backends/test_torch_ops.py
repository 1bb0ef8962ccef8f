"""The torch letterbox/decode/NMS used on the GPU agree with the numpy reference (run here on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stopsign.edge.backends import torch_ops
from stopsign.edge.vision.letterbox import compute_transform, letterbox, to_network_input
from stopsign.edge.vision.postprocess import decode_yolov5, nms


def random_boxes(n: int, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, spread, (n, 2)).astype(np.float32)
    wh = rng.uniform(5, 60, (n, 2)).astype(np.float32)
    return np.concatenate([xy, xy + wh], 1), rng.random(n).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize(
    ("n", "seed", "spread", "iou"),
    [
        (0, 0, 100, 0.45),
        (1, 1, 100, 0.45),
        (50, 2, 40, 0.45),
        (300, 3, 200, 0.5),
        (200, 4, 10, 0.1),
        (80, 5, 50, 0.9),
    ],
)
def test_nms_equals_numpy(n: int, seed: int, spread: float, iou: float) -> None:
    boxes, scores, classes = random_boxes(n, seed, spread)
    expected = nms(boxes, scores, iou, classes)
    got = torch_ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou, torch.from_numpy(classes))
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize(("nc", "conf", "seed"), [(1, 0.25, 0), (3, 0.1, 1), (1, 0.99, 2)])
def test_decode_equals_decode_yolov5(nc: int, conf: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    xy = rng.uniform(0, 320, (n, 2))
    raw = np.concatenate([xy, rng.uniform(4, 80, (n, 2)), rng.random((n, 1 + nc))], 1).astype(np.float32)
    expected = decode_yolov5(raw, conf, 0.45)
    xyxy, score, class_id = torch_ops.decode(torch.from_numpy(raw), conf, 0.45)
    order_e, order_g = np.argsort(-expected.score, kind="stable"), np.argsort(-score.numpy(), kind="stable")
    np.testing.assert_allclose(xyxy.numpy()[order_g], expected.xyxy[order_e], atol=1e-4)
    np.testing.assert_allclose(score.numpy()[order_g], expected.score[order_e], atol=1e-6)
    assert class_id.numpy()[order_g].tolist() == expected.class_id[order_e].tolist()


@pytest.mark.parametrize(
    ("source_hw", "input_hw"),
    [((160, 160), (160, 160)), ((120, 160), (160, 160)), ((720, 1280), (160, 160)), ((90, 60), (128, 160))],
)
def test_letterbox_into_matches_letterbox(source_hw: tuple[int, int], input_hw: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    letterboxed, _ = letterbox(image, input_hw, 114)
    expected = to_network_input(letterboxed, 1 / 255.0, rgb=True)
    transform, (new_h, new_w) = compute_transform(source_hw, input_hw)
    place = torch_ops.Placement(int(transform.pad_y), int(transform.pad_x), new_h, new_w)
    got = torch.empty((1, 3, *input_hw), dtype=torch.float32)
    torch_ops.fill_padding(got, 114, 1 / 255.0)
    torch_ops.letterbox_into(torch.from_numpy(image), got, place, 1 / 255.0, rgb=True)
    error = np.abs(got.numpy() - expected)
    if (new_h, new_w) == source_hw:  # no resize: the same arithmetic exactly
        assert error.max() < 1e-6
    else:  # cv2 rounds its bilinear result to uint8 (and uses 11-bit fixed-point weights)
        assert error.max() <= 1.01 / 255 and error.mean() < 0.3 / 255


def _fixed(raw: np.ndarray, conf: float, iou: float, candidates: int = 256, rounds: int = 8):
    packed = torch_ops.decode_fixed(
        torch.from_numpy(raw), torch.tensor(conf), torch.tensor(iou), candidates, rounds
    )
    return torch_ops.unpack_fixed(packed.numpy(), max_detections=300)


@pytest.mark.parametrize(
    ("n", "nc", "conf", "seed", "quantised"),
    [
        (2000, 1, 0.9, 0, False),  # ~10% over the floor: fits in 256
        (2000, 3, 0.95, 1, False),
        (500, 1, 0.8, 2, True),  # scores rounded to 2 decimals: ties broken by row index
        (10, 1, 0.25, 3, False),  # fewer rows than candidates
        (2000, 1, 0.999, 4, False),  # nothing over the floor
    ],
)
def test_fixed_decode_equals_decode_yolov5(n: int, nc: int, conf: float, seed: int, quantised: bool) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (n, 2))
    probs = rng.random((n, 1 + nc))
    if quantised:
        probs = np.round(probs, 1)
    raw = np.concatenate([xy, rng.uniform(4, 80, (n, 2)), probs], 1).astype(np.float32)
    expected = decode_yolov5(raw, conf, 0.45)
    got = _fixed(raw, conf, 0.45)
    assert got is not None
    xyxy, score, class_id = got
    # Same boxes in the same order (descending score, ties by index), not just the same set.
    np.testing.assert_allclose(xyxy, expected.xyxy, atol=1e-4)
    np.testing.assert_allclose(score, expected.score, atol=1e-6)
    assert class_id.tolist() == expected.class_id.tolist()


def test_fixed_decode_says_when_it_cannot_stand_in() -> None:
    rng = np.random.default_rng(5)
    crowded = np.concatenate(
        [rng.uniform(0, 200, (600, 2)), rng.uniform(4, 80, (600, 2)), np.ones((600, 2))], 1
    ).astype(np.float32)
    assert _fixed(crowded, 0.5, 0.45) is None  # 600 boxes over the floor, room for 256
    # A chain: each box overlaps the next (IoU ~0.6) and scores fall along it, so greedy keeps
    # every other box and the fixed point needs as many rounds as the chain is long.
    chain = np.array([[10 + 2.5 * i, 50, 10, 10, 1 - 0.01 * i, 1] for i in range(20)], np.float32)
    assert _fixed(chain, 0.1, 0.45, rounds=4) is None
    converged = _fixed(chain, 0.1, 0.45, rounds=32)
    assert converged is not None
    assert converged[1].tolist() == pytest.approx(decode_yolov5(chain, 0.1, 0.45).score.tolist())
