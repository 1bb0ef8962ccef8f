"""Red street objects that are not signs: the shipped model's false positives, drawn as sprites.

The real-image validation and the recorded drives showed the detector firing on fire hydrants,
red traffic lights, red autumn foliage and red boxes (post boxes, newspaper boxes). They are
confusers like the signs in ``signs.py``: placed in scenes with a box recorded for statistics,
never labelled as stop signs. Variants that need randomness (foliage) are drawn from fixed seeds,
so the library is the same in every process.
"""

from __future__ import annotations

import cv2
import numpy as np

from stopsign.train.data.synth.signs import SPRITE, Sprite, _finish

DISTRACTOR_KINDS = ("fire_hydrant", "traffic_light", "red_foliage", "red_box")

HYDRANT_COLOURS = ((35, 30, 190), (30, 45, 170), (40, 40, 215))  # BGR reds; most US hydrants
FOLIAGE_SEEDS = (1, 2, 3, 4)


def _rect_outline(w: int, h: int) -> np.ndarray:
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)


def _shade_columns(bgr: np.ndarray, mask: np.ndarray, strength: float) -> None:
    """Darken towards the left and right edges in place: a cylinder lit from the front."""
    w = bgr.shape[1]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    gain = 1.0 - strength * x**2
    bgr[:] = np.clip(bgr.astype(np.float32) * gain[None, :, None], 0, 255).astype(np.uint8)
    bgr[mask == 0] = 0


def fire_hydrant(colour: tuple[int, int, int] = HYDRANT_COLOURS[0], size: int = SPRITE) -> Sprite:
    """Red hydrant: barrel, dome cap with a nut, flange ring, two side nozzles and a front outlet."""
    w, h = size * 3 // 4, size
    bgr = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cx = w // 2
    barrel = (round(w * 0.28), round(h * 0.30), round(w * 0.72), h - round(h * 0.06))
    parts = [
        ("rect", barrel),
        ("rect", (round(w * 0.22), h - round(h * 0.10), round(w * 0.78), h - 1)),  # base flange
        ("rect", (round(w * 0.22), round(h * 0.26), round(w * 0.78), round(h * 0.33))),  # top flange
        ("rect", (round(w * 0.02), round(h * 0.42), round(w * 0.30), round(h * 0.54))),  # left nozzle
        ("rect", (round(w * 0.70), round(h * 0.42), round(w * 0.98), round(h * 0.54))),  # right nozzle
    ]
    for _, (x0, y0, x1, y1) in parts:
        cv2.rectangle(mask, (x0, y0), (x1, y1), 255, -1)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), colour, -1)
    dome_centre, dome_axes = (cx, round(h * 0.27)), (round(w * 0.24), round(h * 0.16))
    cv2.ellipse(mask, dome_centre, dome_axes, 0, 180, 360, 255, -1, cv2.LINE_AA)
    cv2.ellipse(bgr, dome_centre, dome_axes, 0, 180, 360, colour, -1, cv2.LINE_AA)
    nut = (cx - round(w * 0.05), round(h * 0.04), cx + round(w * 0.05), round(h * 0.12))
    cv2.rectangle(mask, nut[:2], nut[2:], 255, -1)
    cv2.rectangle(bgr, nut[:2], nut[2:], tuple(int(c * 0.7) for c in colour), -1)
    # Front outlet cap, often painted white or silver.
    cv2.circle(bgr, (cx, round(h * 0.55)), round(w * 0.11), (200, 200, 205), -1, cv2.LINE_AA)
    _shade_columns(bgr, mask, 0.55)
    return _finish("fire_hydrant", bgr, mask, _rect_outline(w, h))


def traffic_light(lit: int = 0, horizontal: bool = False, size: int = SPRITE) -> Sprite:
    """Dark housing with three lamps, lamp ``lit`` (0 = red) glowing; vertical or horizontal."""
    long_side, short_side = size, size * 2 // 5
    h, w = (short_side, long_side) if horizontal else (long_side, short_side)
    bgr = np.full((h, w, 3), (28, 30, 30), np.uint8)
    mask = np.full((h, w), 255, np.uint8)
    lamp_colours = ((40, 40, 235), (20, 170, 240), (120, 210, 40))  # red, amber, green (BGR)
    radius = round(short_side * 0.34)
    for i in range(3):
        along = round(long_side * (0.18 + 0.32 * i))
        centre = (along, short_side // 2) if horizontal else (short_side // 2, along)
        if i == lit:
            cv2.circle(bgr, centre, radius, lamp_colours[i], -1, cv2.LINE_AA)
            core = tuple(min(255, c + 120) for c in lamp_colours[i])
            cv2.circle(bgr, centre, radius // 2, core, -1, cv2.LINE_AA)
        else:
            dim = tuple(c // 5 + 15 for c in lamp_colours[i])
            cv2.circle(bgr, centre, radius, dim, -1, cv2.LINE_AA)
    return _finish("traffic_light", bgr, mask, _rect_outline(w, h))


def red_foliage(seed: int, size: int = SPRITE) -> Sprite:
    """An autumn tree crown: a ragged blob of overlapping red, orange and dark leaves."""
    rng = np.random.default_rng(seed)
    bgr = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    palette = np.array([[30, 30, 170], [20, 60, 200], [25, 90, 215], [20, 20, 110], [30, 50, 60]], np.uint8)
    centre = np.array([size / 2, size / 2])
    for _ in range(260):
        offset = rng.normal(0, size * 0.2, 2)
        x, y = np.clip(centre + offset, 4, size - 5).astype(int)
        r = int(rng.integers(3, max(4, size // 14)))
        colour = palette[int(rng.integers(len(palette)))].tolist()
        cv2.circle(bgr, (int(x), int(y)), r, colour, -1, cv2.LINE_AA)
        cv2.circle(mask, (int(x), int(y)), r, 255, -1, cv2.LINE_AA)
    ys, xs = np.nonzero(mask)
    outline = np.array(
        [
            [xs.min(), ys.min()],
            [xs.max() + 1, ys.min()],
            [xs.max() + 1, ys.max() + 1],
            [xs.min(), ys.max() + 1],
        ],
        np.float32,
    )
    return _finish("red_foliage", bgr, mask, outline)


def red_box(size: int = SPRITE) -> Sprite:
    """A red street box (post or newspaper box): lit front face, darker side and top, a slot."""
    w, h = size * 3 // 5, size
    bgr = np.zeros((h, w, 3), np.uint8)
    mask = np.full((h, w), 255, np.uint8)
    side = round(w * 0.22)
    top = round(h * 0.12)
    bgr[:] = (30, 30, 175)
    bgr[:, w - side :] = (25, 25, 120)  # side face in shade
    bgr[:top] = (45, 45, 200)  # top face catches the sky
    slot_y = round(h * 0.28)
    cv2.rectangle(
        bgr, (round(w * 0.12), slot_y), (w - side - round(w * 0.10), slot_y + h // 28), (15, 15, 15), -1
    )
    cv2.rectangle(
        bgr,
        (round(w * 0.15), round(h * 0.45)),
        (w - side - round(w * 0.12), round(h * 0.6)),
        (220, 220, 225),
        -1,
    )
    return _finish("red_box", bgr, mask, _rect_outline(w, h))


def build_distractors() -> dict[str, list[Sprite]]:
    """Every distractor variant, keyed by kind (``DISTRACTOR_KINDS``)."""
    return {
        "fire_hydrant": [fire_hydrant(c) for c in HYDRANT_COLOURS],
        "traffic_light": [traffic_light(0, False), traffic_light(0, True), traffic_light(1, False)],
        "red_foliage": [red_foliage(s) for s in FOLIAGE_SEEDS],
        "red_box": [red_box()],
    }
