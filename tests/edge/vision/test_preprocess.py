"""FrameBatcher: the whole frame plus tiles as one batch, decoded back into frame pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.backends.base import BackendError, BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.letterbox import letterbox, to_network_input
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.edge.vision.preprocess import FrameBatcher, ImageSlot, Preprocessor
from stopsign.edge.vision.tiles import Tile, TileConfig

SPEC = ModelSpec(class_names=["stop_sign"], input_size=(160, 160))


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def raw_with_box(
    batch: int, image: int, cx: float, cy: float, w: float, h: float, score: float
) -> np.ndarray:
    """A fake raw head (batch, 4, 6) with one confident box in ``image`` (network-input pixels)."""
    raw = np.zeros((batch, 4, 6), np.float32)
    raw[image, 0] = [cx, cy, w, h, score, 1.0]
    return raw


def test_without_tiles_it_is_the_single_image_path() -> None:
    image = frame(120, 200)
    batcher = FrameBatcher(SPEC)
    batch = batcher(image)
    expected, transform = Preprocessor(SPEC)(image)
    np.testing.assert_array_equal(batch, expected)
    raw = raw_with_box(1, 0, 80, 80, 20, 20, 0.9)
    ours = batcher.decode(raw, 0.25, 0.45)
    reference = decode_yolov5(raw, 0.25, 0.45, transform)
    np.testing.assert_allclose(ours.xyxy, reference.xyxy)


def test_each_slot_is_the_letterboxed_tile() -> None:
    image = frame(300, 500)
    tiles = TileConfig.parse("0,0,160,160;340,140,160,160")
    batcher = FrameBatcher(SPEC, tiles)
    batch = batcher(image)
    assert batch.shape == (3, 3, 160, 160)
    assert batcher.tiles == [Tile(0, 0, 160, 160), Tile(340, 140, 160, 160)]
    for slot, tile in zip(batch[1:], batcher.tiles):
        boxed, _ = letterbox(np.ascontiguousarray(tile.crop(image)), SPEC.input_size, SPEC.pad_value)
        np.testing.assert_allclose(slot, to_network_input(boxed)[0])


def test_a_box_found_in_a_tile_comes_back_in_frame_pixels() -> None:
    image = frame(300, 500)
    batcher = FrameBatcher(SPEC, TileConfig.parse("340,140,160,160"))
    batcher(image)
    found = batcher.decode(raw_with_box(2, 1, 50, 60, 10, 12, 0.8), 0.25, 0.45)
    np.testing.assert_allclose(found.xyxy, [[340 + 45, 140 + 54, 340 + 55, 140 + 66]])


def test_a_box_cut_by_an_inner_tile_edge_is_dropped_and_the_whole_frame_box_kept() -> None:
    image = frame(300, 500)
    batcher = FrameBatcher(SPEC, TileConfig.parse("100,100,160,160"))
    batcher(image)
    raw = np.zeros((2, 4, 6), np.float32)
    raw[1, 0] = [5, 60, 10, 12, 0.9, 1.0]  # touches the tile's left edge (inside the frame)
    scale = 160 / 500  # whole-frame letterbox of 500x300 into 160: 0.32, padded vertically
    pad_y = (160 - round(300 * scale)) // 2
    raw[0, 0] = [110 * scale, 166 * scale + pad_y, 30 * scale, 12 * scale, 0.6, 1.0]
    found = batcher.decode(raw, 0.25, 0.45)
    assert len(found) == 1
    assert found.score[0] == pytest.approx(0.6)


def test_the_plan_follows_the_frame_size() -> None:
    batcher = FrameBatcher(SPEC, TileConfig("auto"), still=True)
    assert batcher(frame(100, 120)).shape[0] == 1  # fits the input: no tile
    assert batcher(frame(320, 320)).shape[0] == 1 + len(batcher.tiles) > 1
    assert batcher(frame(100, 120)).shape[0] == 1


def test_decode_refuses_an_output_of_another_batch() -> None:
    batcher = FrameBatcher(SPEC, TileConfig.parse("0,0,160,160"))
    batcher(frame(300, 500))
    with pytest.raises(ValueError, match="does not hold 2 images"):
        batcher.decode(raw_with_box(1, 0, 10, 10, 5, 5, 0.9), 0.25, 0.45)


def test_preprocessor_checks_a_given_buffer() -> None:
    with pytest.raises(ValueError, match="network_input"):
        Preprocessor(SPEC, np.zeros((1, 3, 100, 100), np.float32))


def test_whole_frame_and_tiles_through_onnxruntime(tiny_onnx: Path) -> None:
    """A real model: each image of the batch gives what it gives alone, boxes land in the frame."""
    backend = OnnxRuntimeBackend()
    spec = backend.load(tiny_onnx, None, BackendOptions(device="cpu"))
    image = frame(240, 400, seed=3)
    batcher = FrameBatcher(spec, TileConfig("auto"))
    batch = batcher(image)
    assert batch.shape[0] == 1 + len(batcher.tiles) == 3
    together = backend.infer(batch)
    alone = np.concatenate([backend.infer(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-3)
    found = batcher.decode(together, 0.001, 0.45)
    assert len(found) > 0
    assert (found.xyxy[:, [0, 2]] <= 400).all() and (found.xyxy[:, [1, 3]] <= 240).all()


@pytest.mark.parametrize(
    ("shape", "tiles"),
    [
        ((120, 200), "none"),
        ((300, 500), "0,0,160,160;340,140,160,160"),
        ((160, 160), "none"),
        ((90, 400), "none"),
    ],
)
def test_image_batches_hold_the_letterboxed_images_of_the_float_batch(
    shape: tuple[int, int], tiles: str
) -> None:
    image = frame(*shape, seed=3)
    floats = FrameBatcher(SPEC, TileConfig.parse(tiles))(image)
    images = FrameBatcher(SPEC, TileConfig.parse(tiles), images=True)(image)
    assert images.dtype == np.uint8 and images.shape == (len(floats), 160, 160, 3)
    for slot, expected in zip(images, floats):
        np.testing.assert_array_equal(to_network_input(slot)[0], expected)


def test_whole_image_is_the_image_region_of_slot_zero_in_both_modes() -> None:
    for images in (False, True):
        batcher = FrameBatcher(SPEC, images=images)
        for shape in ((120, 200), (200, 120), (120, 200)):  # size changes move the region
            image = frame(*shape, seed=shape[0])
            batcher(image)
            boxed, transform = letterbox(image, SPEC.input_size, SPEC.pad_value)
            top, left = int(transform.pad_y), int(transform.pad_x)
            region = batcher.whole_image
            assert region.dtype == np.uint8 and (region != SPEC.pad_value).any()
            np.testing.assert_array_equal(
                region, boxed[top : top + region.shape[0], left : left + region.shape[1]]
            )
            assert region.shape[:2] in ((96, 160), (160, 96))  # the image only, no border


@pytest.mark.parametrize(
    "sizes",
    [
        [(120, 200), (120, 200), (120, 200)],  # the border is written once, then kept
        [(120, 200), (200, 120), (120, 200)],  # landscape <-> portrait: the border moves
        [(120, 200), (160, 160), (90, 400)],  # no border, then a wider one
        [(160, 160), (120, 200)],
    ],
)
def test_every_call_leaves_the_whole_letterboxed_input_as_a_fresh_letterbox(
    sizes: list[tuple[int, int]],
) -> None:
    """The border is refilled only when the frame size changes, so what stays between calls must
    be exactly what a fresh letterbox writes (uint8 slots and the float input alike)."""
    slot, pre = ImageSlot(SPEC), Preprocessor(SPEC)
    slot.letterboxed[...] = 7  # garbage a border must not keep
    pre.letterboxed[...] = 7
    for i, shape in enumerate(sizes):
        image = frame(*shape, seed=i)
        expected, _ = letterbox(image, SPEC.input_size, SPEC.pad_value)
        boxed, _ = slot(image)
        np.testing.assert_array_equal(boxed, expected)
        network_input, _ = pre(image)
        np.testing.assert_array_equal(network_input, to_network_input(expected))


def test_image_batches_decode_as_float_ones() -> None:
    batcher = FrameBatcher(SPEC, TileConfig.parse("340,140,160,160"), images=True)
    batcher(frame(300, 500))
    found = batcher.decode(raw_with_box(2, 1, 80, 80, 20, 20, 0.9), 0.25, 0.45)
    assert len(found) == 1 and found.xyxy[0, 0] > 340  # mapped back into the tile's frame place


def test_an_image_slot_checks_a_given_buffer() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageSlot(SPEC, np.empty((160, 160, 3), np.float32))


def test_a_backend_without_image_input_refuses_images(tiny_onnx: Path) -> None:
    backend = OnnxRuntimeBackend()
    backend.load(tiny_onnx, None, BackendOptions(device="cpu"))
    assert not backend.image_input
    with pytest.raises(BackendError, match="image_input is False"):
        backend.infer_images(np.zeros((1, 160, 160, 3), np.uint8))
