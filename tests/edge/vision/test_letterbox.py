from __future__ import annotations

import numpy as np
import pytest

from stopsign.edge.vision.letterbox import compute_transform, letterbox, to_network_input


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((480, 640), (416, 416)),
        ((640, 480), (416, 416)),
        ((416, 416), (416, 416)),
        ((100, 50), (320, 320)),
        ((1, 1000), (64, 64)),
        ((720, 1280), (384, 640)),
    ],
)
def test_boxes_round_trip_and_border_is_padding(source: tuple[int, int], target: tuple[int, int]) -> None:
    image = np.full((*source, 3), 7, np.uint8)
    out, transform = letterbox(image, target, pad_value=114)
    assert out.shape == (*target, 3)
    h, w = source
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.25, w * 0.5, h * 0.75]], np.float32)
    back = transform.to_source(transform.to_network(boxes))
    assert np.allclose(back, boxes, atol=1.0)
    # The whole source lands inside the input; everything outside it is padding.
    x1, y1, x2, y2 = transform.to_network(boxes[:1])[0]
    assert x1 >= 0 and y1 >= 0 and x2 <= target[1] + 0.5 and y2 <= target[0] + 0.5
    mask = np.ones(target, bool)
    mask[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = False
    assert (out[mask] == 114).all()


def test_reused_buffer_gets_fresh_border() -> None:
    buffer = np.zeros((64, 64, 3), np.uint8)
    letterbox(np.full((64, 32, 3), 200, np.uint8), (64, 64), out=buffer)
    out, _ = letterbox(np.full((32, 64, 3), 50, np.uint8), (64, 64), out=buffer)
    assert out is buffer
    assert out[0, 0, 0] == 114 and out[32, 32, 0] == 50 and out[32, 0, 0] == 50


def test_network_input_is_rgb_scaled_chw() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    tensor = to_network_input(image)
    assert tensor.shape == (1, 3, 4, 4) and tensor.dtype == np.float32
    assert tensor[0, 2].max() == pytest.approx(1.0) and tensor[0, 0].max() == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        letterbox(np.zeros((4, 4), np.uint8), (32, 32))
    with pytest.raises(ValueError, match="out buffer"):
        letterbox(np.zeros((4, 4, 3), np.uint8), (32, 32), out=np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="no pixels"):
        compute_transform((0, 10), (32, 32))
