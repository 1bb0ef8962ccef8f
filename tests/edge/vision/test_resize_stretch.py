"""ModelSpec.resize = "stretch" (Darknet models): frames fill the input with no border, and boxes
map back to source pixels along each axis with its own scale."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from stopsign.edge.model.spec import ModelSpec, ModelSpecError
from stopsign.edge.vision.letterbox import compute_transform, letterbox, resize_for_spec
from stopsign.edge.vision.preprocess import FrameBatcher, Preprocessor

SPEC = ModelSpec(class_names=["stop_sign"], input_size=(128, 128), resize="stretch", strides=(32, 16),
                 anchors=((81, 82, 135, 169, 344, 319), (23, 27, 37, 58, 81, 82)))  # fmt: skip


def frame_with_box(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.full((h, w, 3), 40, np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


@pytest.mark.parametrize(
    ("source", "box"), [((480, 640), (200, 90, 400, 150)), ((720, 300), (30, 500, 120, 700))]
)
def test_stretch_fills_the_input_and_boxes_map_back(source: tuple[int, int], box: tuple[int, ...]) -> None:
    image = frame_with_box(*source, box)
    out, transform = letterbox(image, (128, 128), pad_value=114, resize="stretch")
    assert out.shape == (128, 128, 3) and not (out == 114).all(axis=-1).any()  # no border
    h, w = source
    assert transform.scale_xy == (128 / w, 128 / h) and (transform.pad_x, transform.pad_y) == (0, 0)
    assert np.array_equal(out, cv2.resize(image, (128, 128), interpolation=cv2.INTER_LINEAR))
    # Where the white box landed in the network input, mapped back, is the source box.
    ys, xs = np.nonzero(out[..., 0] > 200)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = transform.to_source(found.copy())[0]
    assert np.allclose(back, box, atol=max(w, h) / 128 * 1.5), (back, box)
    assert np.allclose(
        transform.to_source(transform.to_network(np.array([box], np.float32)))[0], box, atol=1e-3
    )


def test_letterbox_default_is_unchanged_and_stretch_differs() -> None:
    kept, _ = compute_transform((480, 640), (128, 128))
    stretched, size = compute_transform((480, 640), (128, 128), resize="stretch")
    assert kept.scale_y is None and kept.scale_xy == (0.2, 0.2) and kept.pad_y == 16
    assert size == (128, 128) and stretched.scale_xy == (0.2, 128 / 480)
    with pytest.raises(ValueError, match="resize must be one of"):
        compute_transform((480, 640), (128, 128), resize="crop")


def test_preprocessor_and_batcher_decode_into_source_pixels() -> None:
    frame = frame_with_box(480, 640, (240, 90, 400, 150))
    network, _ = Preprocessor(SPEC)(frame)
    expected, _ = resize_for_spec(frame, SPEC)
    assert np.allclose(network[0].transpose(1, 2, 0), expected[..., ::-1] / 255.0)
    batcher = FrameBatcher(SPEC)
    batcher(frame)
    raw = np.zeros((1, SPEC.num_outputs, 6), np.float32)
    # One confident row: centre (64, 32), 32 x 16 network pixels -> x 240..400, y 90..150 in the frame.
    raw[0, 0] = [64, 32, 32, 16, 0.9, 1.0]
    found = batcher.decode(raw, conf=0.5, iou=0.45)
    assert len(found.xyxy) == 1
    assert np.allclose(found.xyxy[0], [240, 90, 400, 150], atol=1e-3)
    letterboxed = FrameBatcher(SPEC.replace(resize="letterbox"))
    letterboxed(frame)
    assert not np.allclose(letterboxed.decode(raw, 0.5, 0.45).xyxy[0], [240, 90, 400, 150], atol=1)


def test_old_specs_read_as_letterbox_and_bad_values_fail() -> None:
    data = json.loads(SPEC.to_json())
    assert data["resize"] == "stretch"
    del data["resize"]
    assert ModelSpec.from_dict(data).resize == "letterbox"
    # A letterbox spec is written without the field: older runtimes (unknown keys are errors) read it.
    assert "resize" not in json.loads(SPEC.replace(resize="letterbox").to_json())
    with pytest.raises(ModelSpecError, match=r"ModelSpec\.resize: must be one of"):
        SPEC.replace(resize="fit")
