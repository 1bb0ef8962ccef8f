"""Camera corruptions: pure, seeded functions whose damage grows with the severity (table-driven)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from stopsign.train.data.corruptions import CORRUPTIONS, MAX_SEVERITY, corrupt

NAMES = sorted(CORRUPTIONS)


def _scene(h: int = 120, w: int = 160) -> np.ndarray:
    """A small road-like scene: sky gradient, darker ground, a red octagon on a pole, texture."""
    rng = np.random.default_rng(1)
    image = np.zeros((h, w, 3), np.uint8)
    sky = np.linspace(200, 120, h // 2, dtype=np.float32)[:, None]
    image[: h // 2] = np.dstack([sky + 20, sky, sky - 30]).clip(0, 255).astype(np.uint8)
    image[h // 2 :] = (70, 80, 85)
    image = cv2.add(image, rng.integers(0, 25, image.shape, dtype=np.uint8))
    cv2.rectangle(image, (98, 60), (102, 110), (90, 90, 90), -1)
    angles = np.deg2rad(22.5 + 45 * np.arange(8))
    octagon = np.stack([100 + 22 * np.cos(angles), 45 + 22 * np.sin(angles)], 1).astype(np.int32)
    cv2.fillPoly(image, [octagon], (30, 30, 200))
    cv2.putText(image, "STOP", (83, 50), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return image


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_kept_and_input_untouched(name: str) -> None:
    image = _scene()
    before = image.copy()
    for severity in range(MAX_SEVERITY + 1):
        out = CORRUPTIONS[name](image, severity, np.random.default_rng(0))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert out is not image
    assert np.array_equal(image, before)


@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_the_identity(name: str) -> None:
    image = _scene()
    assert np.array_equal(CORRUPTIONS[name](image, 0, np.random.default_rng(5)), image)


@pytest.mark.parametrize("name", NAMES)
def test_damage_grows_with_severity(name: str) -> None:
    """Mean absolute difference to the clean image strictly grows from severity 0 to 5 (one seed)."""
    image = _scene()
    diffs = [
        float(np.abs(CORRUPTIONS[name](image, s, np.random.default_rng(7)).astype(np.float32) - image).mean())
        for s in range(MAX_SEVERITY + 1)
    ]
    assert diffs[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(diffs)), f"{name}: {[round(d, 2) for d in diffs]}"


@pytest.mark.parametrize("name", NAMES)
def test_seeded_and_deterministic(name: str) -> None:
    image = _scene()
    first = CORRUPTIONS[name](image, 3, np.random.default_rng(11))
    again = CORRUPTIONS[name](image, 3, np.random.default_rng(11))
    assert np.array_equal(first, again)


@pytest.mark.parametrize(
    "name", ["fog", "underexposure", "colour_cast", "glare", "motion_blur", "rain", "dirty_windscreen"]
)
def test_the_seed_picks_the_scene(name: str) -> None:
    """Corruptions with a random scene (sun position, drops, dirt, noise) differ between seeds."""
    image = _scene()
    a = CORRUPTIONS[name](image, 3, np.random.default_rng(1))
    b = CORRUPTIONS[name](image, 3, np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_fractional_severity_lies_between_its_neighbours() -> None:
    image = _scene().astype(np.float32)
    diffs = [
        np.abs(corrupt("low_contrast", image.astype(np.uint8), s, np.random.default_rng(0)) - image).mean()
        for s in (2, 2.5, 3)
    ]
    assert diffs[0] < diffs[1] < diffs[2]


@pytest.mark.parametrize(
    ("image", "severity", "message"),
    [
        (np.zeros((8, 8), np.uint8), 1, "uint8 \\(h, w, 3\\)"),
        (np.zeros((8, 8, 3), np.float32), 1, "uint8 \\(h, w, 3\\)"),
        (np.zeros((8, 8, 3), np.uint8), 6, "severity must be in \\[0, 5\\], got 6"),
        (np.zeros((8, 8, 3), np.uint8), -1, "severity must be in"),
    ],
)
def test_bad_input_is_named(image: np.ndarray, severity: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        corrupt("fog", image, severity, np.random.default_rng(0))


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'snow'.*fog"):
        corrupt("snow", _scene(), 1, np.random.default_rng(0))
