from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.train.data.hard_examples import image_errors, mine_hard_examples

SIGN = [10.0, 10.0, 50.0, 50.0]


@pytest.mark.parametrize(
    ("gt", "det", "expected"),
    [
        ([], [], (0, 0)),  # empty negative
        ([], [SIGN], (1, 0)),  # any confident box on a negative is a false positive
        ([SIGN], [], (0, 1)),  # nothing found
        ([SIGN], [SIGN], (0, 0)),  # IoU 1
        ([SIGN], [[12.0, 12.0, 52.0, 52.0]], (0, 0)),  # IoU 0.82: found
        ([SIGN], [[10.0, 10.0, 50.0, 30.0]], (0, 0)),  # IoU 0.5 exactly: a hit
        ([SIGN], [[60.0, 60.0, 90.0, 90.0]], (1, 1)),  # IoU 0: a miss and a false positive
        ([SIGN], [[10.0, 10.0, 50.0, 24.0]], (0, 1)),  # IoU 0.35: loose, a miss but not a false positive
        ([SIGN], [[10.0, 10.0, 50.0, 20.0]], (1, 1)),  # IoU 0.25: too far off to be the sign
        ([SIGN, [60.0, 60.0, 90.0, 90.0]], [SIGN], (0, 1)),  # one of two signs missed
    ],
)
def test_image_errors(gt: list, det: list, expected: tuple[int, int]) -> None:
    assert image_errors(np.array(gt).reshape(-1, 4), np.array(det).reshape(-1, 4)) == expected


def test_mining_keeps_only_images_with_errors(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(n_stop=2, n_neg=2)  # stop images hold one sign at [32, 24, 80, 72]
    lines = ["images/tiny_000.jpg", "images/tiny_001.jpg", "images/tiny_002.jpg", "images/tiny_003.jpg"]
    calls = []

    def detector(image: np.ndarray) -> np.ndarray:
        calls.append(image.shape)
        # Finds the sign in tiny_000 only, and fires on negative tiny_003.
        return np.array([[[32, 24, 80, 72]], [], [], [[0, 0, 20, 20]]][len(calls) - 1], float).reshape(-1, 4)

    result = mine_hard_examples(root, lines, detector)
    assert calls == [(96, 128, 3)] * 4
    assert result.hard == ["images/tiny_001.jpg", "images/tiny_003.jpg"]
    assert (result.tally["false_positives"], result.tally["missed"], result.tally["signs"]) == (1, 1, 2)
    assert result.summary(4).startswith("2 of 4 images are hard: 1 false positive boxes, 1 of 2 signs missed")


def test_mining_names_an_unreadable_image(make_dataset) -> None:
    root = make_dataset(n_stop=1, n_neg=0)
    (root / "images/tiny_000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="tiny_000.jpg: not a readable image"):
        mine_hard_examples(root, ["images/tiny_000.jpg"], lambda image: np.zeros((0, 4)))
