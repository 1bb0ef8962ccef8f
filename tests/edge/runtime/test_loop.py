"""Preprocessor: the reused network input equals a fresh letterbox + conversion, frame after frame."""

from __future__ import annotations

import numpy as np
import pytest

from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.letterbox import letterbox, to_network_input
from stopsign.edge.vision.preprocess import Preprocessor


@pytest.mark.parametrize(
    ("input_size", "color_order", "frame_sizes"),
    [
        ((160, 160), "RGB", [(90, 160), (90, 160), (90, 160)]),  # landscape, same size: region only
        ((160, 160), "BGR", [(160, 90), (160, 90)]),  # portrait: region is a column band
        ((128, 160), "RGB", [(120, 160), (240, 100), (240, 100), (120, 160)]),  # size changes back and forth
        ((160, 160), "RGB", [(160, 160), (160, 160), (50, 200)]),  # no border, then a border appears
    ],
)
def test_reused_buffers_match_a_fresh_conversion(
    input_size: tuple[int, int], color_order: str, frame_sizes: list[tuple[int, int]]
) -> None:
    spec = ModelSpec(class_names=["stop_sign"], input_size=input_size, color_order=color_order)
    pre = Preprocessor(spec)
    rng = np.random.default_rng(0)
    for h, w in frame_sizes:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got, transform = pre(image)
        boxed, expected_transform = letterbox(image, input_size, spec.pad_value)
        expected = to_network_input(boxed, spec.scale, color_order == "RGB")
        assert transform == expected_transform
        np.testing.assert_array_equal(got, expected)
