"""Sign sprites: colour image, soft alpha mask and the outline used for the ground-truth box.

Sprites are drawn once per generator at ``SPRITE`` pixels (anti-aliased) and then warped into
each scene, so per-image cost is one small ``warpPerspective`` per sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SPRITE = 160
STOP_TEXTS = ("STOP", "STOP", "STOP", "STOP", "ALTO", "ARRET", "PARE", "BERHENTI")
SHOP_TEXTS = ("SHOP", "SALE", "OPEN", "PIZZA", "HOTEL", "BAR", "TOPS")
CONFUSER_KINDS = (
    "do_not_enter",
    "yield",
    "red_rim_round",
    "yellow_diamond",
    "tail_lights",
    "red_shop_sign",
    "octagon_back",
)

RED = (30, 20, 200)  # BGR
WHITE = (245, 245, 245)


@dataclass(frozen=True)
class Sprite:
    """``bgr`` (h, w, 3) uint8, ``alpha`` (h, w) float32 in [0, 1], ``outline`` (k, 2) float32 pixels."""

    kind: str
    bgr: np.ndarray
    alpha: np.ndarray
    outline: np.ndarray


def octagon(center: tuple[float, float], apothem: float) -> np.ndarray:
    """(8, 2) vertices of a flat-topped regular octagon whose flat-to-flat width is ``2 * apothem``."""
    radius = apothem / np.cos(np.pi / 8)
    angles = np.pi / 8 + np.arange(8) * np.pi / 4
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], 1)


def _poly(img: np.ndarray, pts: np.ndarray, color: tuple[int, ...]) -> None:
    shift = 4  # sub-pixel vertices for clean anti-aliased edges
    cv2.fillPoly(img, [np.round(pts * (1 << shift)).astype(np.int32)], color, cv2.LINE_AA, shift)


def _text(img: np.ndarray, text: str, center: tuple[float, float], width: float, color, thick_frac=0.11):
    """Draw ``text`` centred at ``center`` scaled so its width is ``width`` pixels."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, _), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = width / tw
    thickness = max(1, round(scale * 30 * thick_frac))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = (round(center[0] - tw / 2), round(center[1] + th / 2))
    cv2.putText(img, text, org, font, scale, color, thickness, cv2.LINE_AA)


def _finish(kind: str, bgr: np.ndarray, mask: np.ndarray, outline: np.ndarray) -> Sprite:
    return Sprite(kind, bgr, mask.astype(np.float32) / 255.0, outline.astype(np.float32))


def stop_sign(text: str = "STOP", border: float = 0.07, size: int = SPRITE) -> Sprite:
    """Red octagon, white border ring, white lettering (``text`` in Latin script)."""
    c = (size / 2, size / 2)
    bgr = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    outer = octagon(c, size / 2 - 0.5)
    _poly(mask, outer, (255,))
    _poly(bgr, outer, WHITE)
    _poly(bgr, octagon(c, (size / 2) * (1 - border)), RED)
    text_width = size * (0.66 if len(text) <= 4 else 0.78)
    _text(bgr, text, c, text_width, WHITE, 0.13 if len(text) <= 5 else 0.09)
    return _finish("stop_sign", bgr, mask, outer)


def octagon_back(size: int = SPRITE) -> Sprite:
    """Grey back of an octagon with the vertical mounting bracket."""
    c = (size / 2, size / 2)
    bgr = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    outer = octagon(c, size / 2 - 0.5)
    _poly(mask, outer, (255,))
    _poly(bgr, outer, (150, 152, 150))
    _poly(bgr, octagon(c, size / 2 * 0.93), (165, 167, 165))
    cv2.rectangle(bgr, (round(size * 0.45), 2), (round(size * 0.55), size - 3), (95, 95, 95), -1)
    for y in (0.2, 0.8):
        cv2.circle(bgr, (size // 2, round(size * y)), max(2, size // 40), (60, 60, 60), -1, cv2.LINE_AA)
    return _finish("octagon_back", bgr, mask, outer)


def do_not_enter(size: int = SPRITE) -> Sprite:
    """Red disc with a white horizontal bar (and a thin white rim)."""
    bgr = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    c, r = (size // 2, size // 2), size // 2 - 1
    cv2.circle(mask, c, r, 255, -1, cv2.LINE_AA)
    cv2.circle(bgr, c, r, WHITE, -1, cv2.LINE_AA)
    cv2.circle(bgr, c, round(r * 0.94), RED, -1, cv2.LINE_AA)
    cv2.rectangle(
        bgr, (round(size * 0.18), round(size * 0.41)), (round(size * 0.82), round(size * 0.59)), WHITE, -1
    )
    return _finish("do_not_enter", bgr, mask, _circle_outline(c, r))


def yield_sign(size: int = SPRITE) -> Sprite:
    """Inverted triangle: red band, white centre."""
    h = round(size * 0.87)
    bgr = np.zeros((h, size, 3), np.uint8)
    mask = np.zeros((h, size), np.uint8)
    tri = np.array([[0.5, 0.5], [size - 0.5, 0.5], [size / 2, h - 0.5]], np.float32)
    _poly(mask, tri, (255,))
    _poly(bgr, tri, RED)
    centroid = tri.mean(0)
    _poly(bgr, centroid + (tri - centroid) * 0.55, WHITE)
    return _finish("yield", bgr, mask, tri)


def red_rim_round(label: str = "50", size: int = SPRITE) -> Sprite:
    """White disc with a red rim and a black number (speed limit / prohibitory)."""
    bgr = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    c, r = (size // 2, size // 2), size // 2 - 1
    cv2.circle(mask, c, r, 255, -1, cv2.LINE_AA)
    cv2.circle(bgr, c, r, RED, -1, cv2.LINE_AA)
    cv2.circle(bgr, c, round(r * 0.78), WHITE, -1, cv2.LINE_AA)
    if label:
        _text(bgr, label, (c[0], c[1]), size * 0.45, (20, 20, 20), 0.14)
    return _finish("red_rim_round", bgr, mask, _circle_outline(c, r))


def yellow_diamond(size: int = SPRITE) -> Sprite:
    """Yellow diamond warning sign with a black rim and a black symbol."""
    bgr = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    s = size - 1
    diamond = np.array([[s / 2, 0.5], [s, s / 2], [s / 2, s], [0.5, s / 2]], np.float32)
    _poly(mask, diamond, (255,))
    _poly(bgr, diamond, (20, 20, 20))
    centre = np.array([s / 2, s / 2], np.float32)
    _poly(bgr, centre + (diamond - centre) * 0.9, (20, 190, 240))
    cv2.line(bgr, (size // 2, round(size * 0.3)), (size // 2, round(size * 0.58)), (20, 20, 20), size // 14)
    cv2.circle(bgr, (size // 2, round(size * 0.7)), size // 22, (20, 20, 20), -1, cv2.LINE_AA)
    return _finish("yellow_diamond", bgr, mask, diamond)


def tail_lights(size: int = SPRITE) -> Sprite:
    """Rear of a dark car: body with two glowing red lamps."""
    h = size // 2
    bgr = np.zeros((h, size, 3), np.uint8)
    mask = np.zeros((h, size), np.uint8)
    cv2.rectangle(mask, (0, 0), (size - 1, h - 1), 255, -1)
    bgr[:] = (40, 38, 36)
    for cx in (round(size * 0.14), round(size * 0.86)):
        cv2.ellipse(bgr, (cx, h // 3), (size // 9, h // 7), 0, 0, 360, (40, 40, 230), -1, cv2.LINE_AA)
        cv2.ellipse(bgr, (cx, h // 3), (size // 18, h // 14), 0, 0, 360, (190, 200, 255), -1, cv2.LINE_AA)
    cv2.rectangle(
        bgr, (round(size * 0.38), round(h * 0.55)), (round(size * 0.62), round(h * 0.75)), WHITE, -1
    )
    outline = np.array([[0, 0], [size, 0], [size, h], [0, h]], np.float32)
    return _finish("tail_lights", bgr, mask, outline)


def red_shop_sign(text: str = "SHOP", size: int = SPRITE) -> Sprite:
    """Red rectangular shop sign with white lettering."""
    h = size // 2
    bgr = np.full((h, size, 3), RED, np.uint8)
    mask = np.full((h, size), 255, np.uint8)
    _text(bgr, text, (size / 2, h / 2), size * 0.7, WHITE, 0.12)
    outline = np.array([[0, 0], [size, 0], [size, h], [0, h]], np.float32)
    return _finish("red_shop_sign", bgr, mask, outline)


def _circle_outline(c: tuple[int, int], r: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    return np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], 1)


def build_library() -> dict[str, list[Sprite]]:
    """All sprite variants, keyed by kind (``stop_sign`` plus ``CONFUSER_KINDS``)."""
    return {
        "stop_sign": [stop_sign(t, b) for t in STOP_TEXTS for b in (0.06, 0.09)],
        "do_not_enter": [do_not_enter()],
        "yield": [yield_sign()],
        "red_rim_round": [red_rim_round(t) for t in ("30", "50", "70", "")],
        "yellow_diamond": [yellow_diamond()],
        "tail_lights": [tail_lights()],
        "red_shop_sign": [red_shop_sign(t) for t in SHOP_TEXTS],
        "octagon_back": [octagon_back()],
    }
