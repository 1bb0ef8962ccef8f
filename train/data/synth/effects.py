"""Photometric effects on whole (h, w, 3) uint8 BGR frames; all vectorised or done by OpenCV."""

from __future__ import annotations

import cv2
import numpy as np


def motion_blur(img: np.ndarray, rng: np.random.Generator, max_len: int = 9) -> np.ndarray:
    """Linear blur of 3..max_len px at a random angle (camera or vehicle motion)."""
    length = int(rng.integers(3, max_len + 1))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


def gamma_lut(gamma: float, gain: float = 1.0) -> np.ndarray:
    x = np.arange(256, dtype=np.float32) / 255.0
    return np.clip(255.0 * gain * x**gamma, 0, 255).astype(np.uint8)


def low_light(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Night/dusk: darker, higher gamma, slight blue cast."""
    out = cv2.LUT(img, gamma_lut(float(rng.uniform(1.4, 2.6)), float(rng.uniform(0.35, 0.8))))
    tint = np.array([1.1, 1.0, 0.9], np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    return np.clip(out * tint, 0, 255).astype(np.uint8)


def exposure(img: np.ndarray, gain: float) -> np.ndarray:
    """Scale brightness by ``gain`` (saturating)."""
    return cv2.convertScaleAbs(img, alpha=gain, beta=0)


def glare(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One or two headlight blooms: additive radial glow with a bright core."""
    h, w = img.shape[:2]
    glow = np.zeros((h // 4, w // 4), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        centre = (int(rng.integers(0, w // 4)), int(rng.integers(h // 8, h // 4)))
        cv2.circle(glow, centre, int(rng.integers(2, 6)), 1.0, -1)
    glow = cv2.GaussianBlur(glow, (0, 0), float(rng.uniform(4, 10)))
    glow = cv2.resize(glow / max(float(glow.max()), 1e-6), (w, h))
    add = (glow * rng.uniform(120, 255))[..., None] * np.array([0.9, 0.95, 1.0], np.float32)
    return cv2.add(img, add.astype(np.uint8))


def rain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright slanted streaks, slightly blurred, blended over the frame."""
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.uint8)
    n = int(rng.integers(60, 250))
    slant = rng.uniform(-0.4, 0.4)
    x = rng.integers(0, w, n)
    y = rng.integers(0, h, n)
    length = rng.integers(8, 25, n)
    for xi, yi, li in zip(x.tolist(), y.tolist(), length.tolist(), strict=True):
        cv2.line(layer, (xi, yi), (int(xi + slant * li), yi + li), 200, 1)
    layer = cv2.blur(layer, (3, 3))
    return cv2.addWeighted(img, 1.0, cv2.cvtColor(layer, cv2.COLOR_GRAY2BGR), 0.5, -5)


class NoiseTile:
    """A fixed Gaussian noise tile; frames take random windows of it (much cheaper than fresh noise)."""

    def __init__(self, seed: int, side: int = 1024) -> None:
        self.tile = np.random.default_rng(seed).normal(0, 1, (side, side, 3)).astype(np.float32)

    def apply(self, img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
        h, w = img.shape[:2]
        side = self.tile.shape[0]
        y, x = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
        noisy = cv2.scaleAdd(self.tile[y : y + h, x : x + w], sigma, img.astype(np.float32))
        return np.clip(noisy, 0, 255).astype(np.uint8)
