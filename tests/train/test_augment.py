"""Augmentations: boxes follow the pixels, stay inside the image, and the RNG makes them repeatable."""

from __future__ import annotations

import numpy as np
import pytest

from stopsign.train import augment


def _image_with_box(size: int = 64, box=(16, 20, 40, 44)) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((size, size, 3), 50, np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image, np.array([[0, *box]], np.float32)


def _bright_extent(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image[..., 0] > 200)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("seed", range(5))
def test_affine_boxes_follow_the_pixels(seed: int) -> None:
    image, labels = _image_with_box()
    rng = np.random.default_rng(seed)
    out, moved = augment.random_affine(image, labels, (64, 64), rng, translate=0.1, scale=0.3)
    assert out.shape == (64, 64, 3)
    if len(moved):
        assert np.allclose(moved[0, 1:], _bright_extent(out), atol=1.5)
        assert (moved[:, 1:] >= 0).all() and (moved[:, 1:] <= 64).all()


def test_affine_identity_keeps_image_and_boxes() -> None:
    image, labels = _image_with_box()
    out, moved = augment.random_affine(
        image, labels, (64, 64), np.random.default_rng(0), translate=0.0, scale=0.0
    )
    assert np.array_equal(out, image)
    assert np.allclose(moved, labels)


@pytest.mark.parametrize(
    ("after", "gain", "kept"),
    [
        ((0, 0, 10, 10), 1.0, True),  # unchanged
        ((0, 0, 2, 10), 1.0, False),  # 2 px wide: too thin
        ((0, 0, 10, 0.9), 1.0, False),  # squashed
        ((0, 0, 3, 3), 1.0, False),  # 9% of its area left (mostly cropped away)
        ((0, 0, 3, 3), 0.09, True),  # ... but that is what a 0.3x scale does to it: kept
        ((0, 0, 60, 2.5), 10.0, False),  # aspect 24 > 20
    ],
)
def test_box_candidates(after, gain, kept) -> None:
    before = np.array([[0, 0, 10, 10]], np.float32)
    assert augment.box_candidates(before, np.array([after], np.float32), gain=gain).tolist() == [kept]


def test_mosaic_places_four_images_and_their_boxes() -> None:
    images, labels = [], []
    for _ in range(4):
        image, lab = _image_with_box(32, (8, 8, 24, 24))
        images.append(image)
        labels.append(lab)
    canvas, merged = augment.mosaic(images, labels, 32, np.random.default_rng(1))
    assert canvas.shape == (64, 64, 3)
    assert len(merged) >= 1
    assert (merged[:, 1:] >= 0).all() and (merged[:, 1:] <= 64).all()
    for row in merged:
        x1, y1, x2, y2 = (round(float(v)) for v in row[1:])
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            assert (canvas[y1:y2, x1:x2, 0] == 255).mean() > 0.9


def test_mosaic_needs_four() -> None:
    with pytest.raises(ValueError, match="4 images"):
        augment.mosaic([np.zeros((4, 4, 3), np.uint8)], [np.zeros((0, 5))], 4, np.random.default_rng(0))


def test_hsv_jitter_is_seeded_and_keeps_shape() -> None:
    base = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    a, b = base.copy(), base.copy()
    augment.hsv_jitter(a, 0.015, 0.7, 0.4, np.random.default_rng(7))
    augment.hsv_jitter(b, 0.015, 0.7, 0.4, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, base)
    c = base.copy()
    augment.hsv_jitter(c, 0.0, 0.0, 0.0, np.random.default_rng(7))
    assert np.array_equal(c, base)


@pytest.mark.parametrize("horizontal", [True, False])
def test_flip_boxes(horizontal: bool) -> None:
    image, labels = _image_with_box()
    out, flipped = augment.flip(image, labels, horizontal)
    assert np.allclose(flipped[0, 1:], _bright_extent(out))


# Camera corruptions (train/data/corruptions.py) as a training augmentation.


@pytest.mark.parametrize("probability", [0.1, 0.25, 0.5, 0.9])
def test_camera_corruption_applied_at_the_configured_rate(probability: float) -> None:
    """Over 3,000 draws of one seeded stream the applied share is the probability, within 4 sigma."""
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    rng = np.random.default_rng(42)
    draws = 3000
    names = [augment.camera_corruption(image, probability, (1.0, 3.0), rng)[1] for _ in range(draws)]
    applied = sum(name is not None for name in names)
    sigma = (draws * probability * (1 - probability)) ** 0.5
    assert abs(applied - draws * probability) < 4 * sigma, (applied, draws * probability)
    if probability >= 0.5:  # every corruption gets picked
        assert {n for n in names if n} == set(augment.CORRUPTIONS)


def test_camera_corruption_off_draws_nothing() -> None:
    image = np.full((16, 16, 3), 90, np.uint8)
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    out, name = augment.camera_corruption(image, 0.0, (1.0, 3.0), rng)
    assert out is image and name is None
    assert rng.random() == twin.random()  # the stream is where it was: older seeds stay repeatable


def test_camera_corruption_always_on_changes_the_image() -> None:
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    rng = np.random.default_rng(5)
    for _ in range(20):
        out, name = augment.camera_corruption(image, 1.0, (2.0, 5.0), rng)
        assert name in augment.CORRUPTIONS and out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image), name


@pytest.mark.parametrize("severity_range", [(3.0, 2.0), (-1.0, 2.0), (1.0, 6.0)])
def test_camera_corruption_rejects_bad_severity_range(severity_range: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="severity range"):
        augment.camera_corruption(
            np.zeros((8, 8, 3), np.uint8), 0.5, severity_range, np.random.default_rng(0)
        )
