"""Scene backgrounds: crops of real photos without stop signs, and drawn roads under a sky."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data import layout

MAX_SIDE = 640  # real photos are cached at most this large: enough for a 416 crop, cheap to hold


def negative_photos(dataset: Path, limit: int = 400) -> list[Path]:
    """Images of a canonical dataset whose role is confuser or negative (no stop sign), sorted.

    Validation images are never used: a synthetic training image built on a validation photo
    would leak it into training. ``limit`` photos are taken evenly across all sources.
    """
    records = layout.read_sources(Path(dataset))
    if not records:
        raise layout.DatasetError(
            f"{dataset / layout.SOURCES}: no records; --backgrounds needs an imported set"
        )
    held_out = {Path(entry).name for entry in layout.read_list(Path(dataset), layout.VAL_LIST)}
    names = sorted(n for n, r in records.items() if r.role != "stop" and n not in held_out)
    if len(names) > limit:
        step = len(names) / limit
        names = [names[int(i * step)] for i in range(limit)]
    return [Path(dataset) / layout.IMAGES / n for n in names]


class BackgroundPool:
    """Draws (size, size, 3) uint8 backgrounds; photos are loaded once, on first use."""

    def __init__(self, photos: list[Path], size: int, photo_share: float = 0.6) -> None:
        self.photos = photos
        self.size = size
        self.photo_share = photo_share if photos else 0.0
        self._cache: dict[int, np.ndarray] = {}

    def _photo(self, index: int) -> np.ndarray:
        if index not in self._cache:
            img = cv2.imread(str(self.photos[index]))
            if img is None:
                raise layout.DatasetError(f"{self.photos[index]}: cannot be decoded")
            scale = MAX_SIDE / max(img.shape[:2])
            if scale < 1:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            self._cache[index] = img
        return self._cache[index]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.photo_share:
            return self._crop(self._photo(int(rng.integers(len(self.photos)))), rng)
        return procedural_road(rng, self.size)

    def _crop(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.45, 1.0))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        crop = img[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_LINEAR)


def procedural_road(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sky gradient, horizon with buildings/trees, asphalt road with lane marks: (size, size, 3) uint8."""
    horizon = int(size * rng.uniform(0.3, 0.6))
    # BGR sky from grey to blue: blue >= green >= red keeps it out of purple and red.
    value = rng.uniform(150, 255)
    green = rng.uniform(0.8, 1.0)
    top = np.array([value, value * green, value * green * rng.uniform(0.65, 1.0)])
    bottom = top * rng.uniform(0.7, 1.0) + rng.uniform(0, 40)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None]
    img = np.empty((size, size, 3), np.uint8)
    img[:horizon] = np.clip(top * (1 - t) + bottom * t, 0, 255).astype(np.uint8)[:, None, :]
    ground = rng.uniform([40, 60, 40], [110, 140, 120])
    img[horizon:] = ground.astype(np.uint8)
    for _ in range(int(rng.integers(2, 9))):  # buildings and tree masses along the horizon
        w = int(rng.integers(size // 12, size // 3))
        h = int(rng.integers(size // 20, max(size // 20 + 1, horizon)))
        x = int(rng.integers(-w // 2, size))
        color = rng.uniform(20, 200, 3) if rng.random() < 0.6 else rng.uniform([20, 60, 20], [70, 140, 80])
        cv2.rectangle(img, (x, horizon - h), (x + w, horizon), color.tolist(), -1)
    vanish = size * rng.uniform(0.3, 0.7)
    half = size * rng.uniform(0.35, 0.9)
    road = np.array(
        [[vanish - 2, horizon], [vanish + 2, horizon], [size / 2 + half, size], [size / 2 - half, size]]
    )
    asphalt = float(rng.uniform(50, 120))
    cv2.fillPoly(img, [road.astype(np.int32)], (asphalt, asphalt, asphalt * 1.02))
    for k in range(6):  # dashed centre line, shrinking with distance
        a, b = k / 6, (k + 0.5) / 6
        p = [(vanish + (size / 2 - vanish) * f, horizon + (size - horizon) * f) for f in (a**1.5, b**1.5)]
        cv2.line(img, tuple(map(int, p[0])), tuple(map(int, p[1])), (220, 220, 220), max(1, int(6 * b)))
    texture = cv2.resize(rng.normal(0, 12, (size // 16, size // 16, 1)).astype(np.float32), (size, size))
    return np.clip(img + texture[..., None], 0, 255).astype(np.uint8)
