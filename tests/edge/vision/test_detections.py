from __future__ import annotations

import numpy as np
import pytest

from stopsign.edge.vision.detections import Detections, DetectionsError


def test_empty_has_documented_shapes() -> None:
    empty = Detections.empty()
    assert len(empty) == 0
    assert empty.xyxy.shape == (0, 4) and empty.xyxy.dtype == np.float32
    assert empty.score.shape == (0,) and empty.class_id.dtype == np.int32
    assert empty.to_records(["stop_sign"]) == []


def test_construction_casts_and_selects() -> None:
    dets = Detections([[0, 0, 10, 20], [5, 5, 6, 6]], [0.9, 0.2], [0, 0])
    assert dets.xyxy.dtype == np.float32 and dets.class_id.dtype == np.int32
    assert len(dets.above(0.5)) == 1
    assert dets.height.tolist() == [20, 1]
    assert dets[1].score.tolist() == pytest.approx([0.2])
    assert dets.to_records(["stop_sign"])[0] == {"xyxy": [0, 0, 10, 20], "score": 0.9, "class": "stop_sign"}


@pytest.mark.parametrize(
    ("xyxy", "score", "class_id", "message"),
    [
        ([[0, 0, 1]], [0.5], [0], "shape"),
        ([[0, 0, 1, 1]], [0.5, 0.1], [0], "score must have shape"),
        ([[0, 0, 1, 1]], [0.5], [0, 1], "class_id must have shape"),
        ([[0, 0, np.nan, 1]], [0.5], [0], "NaN"),
        ([[0, 0, 1, 1]], [np.inf], [0], "NaN or infinite"),
        ([[5, 0, 1, 1]], [0.5], [0], "x2 < x1"),
        ([[0, 0, 1, 1]], [0.5], [-1], "negative"),
        ([[0, 0, 1, 1]], [0.5], [0.5], "integers"),
    ],
)
def test_invalid_input_is_named(xyxy: list, score: list, class_id: list, message: str) -> None:
    with pytest.raises(DetectionsError, match=message):
        Detections(np.array(xyxy, dtype=np.float64), np.array(score), np.array(class_id))
