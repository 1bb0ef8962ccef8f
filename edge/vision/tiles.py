"""High-resolution tiles: look closer where far stop signs appear (a digital "telephoto" camera).

The whole frame is letterboxed into the network input as always; each tile is a region of the
frame cut at (near) native resolution and letterboxed into one more network input of the same
batch. A far sign that is 6 px wide in the whole-frame input is 17 px wide in a native 416 tile of
a 1280 px frame. Boxes found in a tile are moved back to frame pixels and merged with the
whole-frame boxes by class-aware NMS.

Geometry (all in source-frame pixels, integers, ``x, y`` = top-left corner):

* ``--tiles none``: no tiles (the default).
* ``--tiles auto`` on video: a horizontal band of tiles the size of the network input, centred on
  the vanishing point (the intrinsics' ``cx`` and ``cy`` when known, else the frame centre), placed
  with three quarters of its height above the horizon, because a sign on a 2.1 m post is above a
  car camera's horizon; at most :data:`AUTO_VIDEO_TILES` tiles wide. A frame no larger than the
  network input gets no tile (the whole-frame pass is already at native resolution or above).
* ``--tiles auto`` on still images: SAHI-style, a grid of overlapping tiles of the network input
  size covering the whole image (overlap at least :data:`GRID_OVERLAP` of a tile).
* ``--tiles "x,y,w,h;x,y,w,h"``: fixed regions, in pixels (integers) or as fractions of the frame
  (every value a number with a decimal point, in [0, 1]); clipped to the frame.

A box that touches a tile edge lying inside the frame was probably cut by the tile, so it is
dropped: the neighbouring tile (they overlap) or the whole frame sees the whole sign.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.postprocess import MAX_DETECTIONS, nms

TILE_MODES = ("none", "auto")
AUTO_VIDEO_TILES = 2  # tiles across the horizon band on video (cost: one model run each)
GRID_OVERLAP = 0.2  # minimum overlap of neighbouring still-image tiles, as a fraction of a tile
MAX_GRID_TILES = 24  # a 4K photo at 416 would need 60; beyond this the tiles grow (and shrink the sign)
HORIZON_ABOVE = 0.75  # fraction of a band tile's height above the horizon line
CUT_MARGIN_PX = 2.0  # a box within this of an inner tile edge counts as cut by it


class TileConfigError(ValueError):
    """A ``--tiles`` value is malformed; the message names the value and what is wrong."""


@dataclass(frozen=True)
class Tile:
    """A region of the frame, in source pixels: top-left ``(x, y)``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if self.w <= 0 or self.h <= 0 or self.x < 0 or self.y < 0:
            raise TileConfigError(f"tile {self.as_text()}: needs x, y >= 0 and w, h > 0")

    def as_text(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's view of an HxWx3 image (no copy)."""
        return image[self.y : self.y + self.h, self.x : self.x + self.w]

    def inner_edges(self, frame_hw: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
        """(left, top, right, bottom): which of the tile's edges lie inside the frame."""
        height, width = frame_hw
        return (self.x > 0, self.y > 0, self.x + self.w < width, self.y + self.h < height)


@dataclass(frozen=True)
class TileConfig:
    """What the user asked for: ``none``, ``auto`` or fixed regions (see the module docstring).

    ``regions`` holds (x, y, w, h) per tile: pixels when ``fractions`` is False, else fractions
    of the frame width and height.
    """

    mode: str = "none"
    regions: tuple[tuple[float, float, float, float], ...] = ()
    fractions: bool = False

    @classmethod
    def parse(cls, text: str | None) -> TileConfig:
        """``none`` | ``auto`` | ``x,y,w,h[;x,y,w,h...]`` -> TileConfig (round-trips with :meth:`text`)."""
        value = (text or "none").strip()
        if value.lower() in TILE_MODES:
            return cls(value.lower())
        regions: list[tuple[float, float, float, float]] = []
        kinds: set[bool] = set()
        for part in value.split(";"):
            if not part.strip():
                continue
            fields = [f.strip() for f in part.split(",")]
            if len(fields) != 4:
                raise TileConfigError(
                    f"tiles {value!r}: region {part.strip()!r} needs four numbers x,y,w,h; "
                    "or use 'none' or 'auto'"
                )
            try:
                numbers = tuple(float(f) for f in fields)
            except ValueError:
                raise TileConfigError(
                    f"tiles {value!r}: region {part.strip()!r} is not four numbers"
                ) from None
            fractional = any("." in f for f in fields)
            kinds.add(fractional)
            x, y, w, h = numbers
            if not all(math.isfinite(v) for v in numbers) or min(x, y) < 0 or min(w, h) <= 0:
                raise TileConfigError(
                    f"tiles {value!r}: region {part.strip()!r} needs x, y >= 0 and w, h > 0"
                )
            if fractional and (x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9):
                raise TileConfigError(
                    f"tiles {value!r}: fractional region {part.strip()!r} must lie within the frame "
                    "(x + w <= 1 and y + h <= 1)"
                )
            if not fractional and any(v != int(v) for v in numbers):
                raise TileConfigError(f"tiles {value!r}: pixel region {part.strip()!r} must be integers")
            regions.append((x, y, w, h))
        if not regions:
            raise TileConfigError(f"tiles {value!r}: give 'none', 'auto' or x,y,w,h regions separated by ';'")
        if len(kinds) > 1:
            raise TileConfigError(
                f"tiles {value!r}: mixes pixel and fractional regions; use one kind for all"
            )
        return cls("manual", tuple(regions), fractions=kinds.pop())

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def text(self) -> str:
        """The ``--tiles`` value this config came from (normalised)."""
        if self.mode in TILE_MODES:
            return self.mode
        fmt = _fraction_text if self.fractions else (lambda v: str(int(v)))
        return ";".join(",".join(fmt(v) for v in region) for region in self.regions)

    def plan(
        self,
        frame_hw: tuple[int, int],
        input_hw: tuple[int, int],
        still: bool = False,
        principal_point: tuple[float, float] | None = None,
    ) -> list[Tile]:
        """The tiles for one frame size. ``principal_point``: (cx, cy) of the camera, if known."""
        if self.mode == "none":
            return []
        if self.mode == "auto":
            if still:
                return grid_tiles(frame_hw, input_hw)
            return horizon_band_tiles(frame_hw, input_hw, principal_point)
        height, width = frame_hw
        tiles = []
        for x, y, w, h in self.regions:
            if self.fractions:
                x, w, y, h = x * width, w * width, y * height, h * height
            x0, y0 = min(round(x), width - 1), min(round(y), height - 1)
            x1, y1 = min(round(x + w), width), min(round(y + h), height)
            if x1 - x0 >= 8 and y1 - y0 >= 8:  # a region mostly off-frame is skipped, not an error
                tiles.append(Tile(x0, y0, x1 - x0, y1 - y0))
        return tiles


def _fraction_text(value: float) -> str:
    """A fraction with a decimal point always (``1.0``, ``0.25``), so it parses back as a fraction."""
    text = f"{value:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _spread(length: int, tile: int, count: int) -> list[int]:
    """``count`` start offsets of ``tile``-long windows covering [0, length) evenly, ends included."""
    if count <= 1 or length <= tile:
        return [max(0, (length - tile) // 2)]
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def horizon_band_tiles(
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    principal_point: tuple[float, float] | None = None,
    max_tiles: int = AUTO_VIDEO_TILES,
) -> list[Tile]:
    """Native-resolution tiles along the horizon, centred on the vanishing point (module docstring)."""
    height, width = frame_hw
    tile_h, tile_w = input_hw
    if height <= tile_h and width <= tile_w:
        return []
    cx, cy = principal_point if principal_point is not None else (width / 2, height / 2)
    tile_h, tile_w = min(tile_h, height), min(tile_w, width)
    band_w = min(width, max_tiles * tile_w)
    count = min(max_tiles, math.ceil(band_w / tile_w))
    if count > 1 and band_w < count * tile_w:
        band_w = min(width, count * tile_w)  # tiles side by side; they overlap only when the frame is narrow
    band_x = round(min(max(cx - band_w / 2, 0), width - band_w))
    top = round(min(max(cy - HORIZON_ABOVE * tile_h, 0), height - tile_h))
    return [Tile(band_x + x, top, tile_w, tile_h) for x in _spread(band_w, tile_w, count)]


def grid_tiles(
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    overlap: float = GRID_OVERLAP,
    max_tiles: int = MAX_GRID_TILES,
) -> list[Tile]:
    """Overlapping tiles of the input size covering the whole image (SAHI-style), for stills.

    Neighbours overlap by at least ``overlap`` of a tile, so a sign smaller than that lies whole in
    one tile. Above ``max_tiles`` the tiles grow (keeping the input's aspect), and each is then
    scaled down into the network input.
    """
    if not 0.0 <= overlap < 1.0:
        raise TileConfigError(f"tile overlap must be in [0, 1), got {overlap}")
    height, width = frame_hw
    tile_h, tile_w = input_hw
    if height <= tile_h and width <= tile_w:
        return []
    grow = 1.0
    while True:
        th, tw = min(height, int(tile_h * grow)), min(width, int(tile_w * grow))
        step_h, step_w = th * (1 - overlap), tw * (1 - overlap)
        rows = 1 if height <= th else math.ceil((height - th) / step_h) + 1
        cols = 1 if width <= tw else math.ceil((width - tw) / step_w) + 1
        if rows * cols <= max_tiles:
            break
        grow *= 1.25
    return [Tile(x, y, tw, th) for y in _spread(height, th, rows) for x in _spread(width, tw, cols)]


def tile_to_frame(detections: Detections, tile: Tile, frame_hw: tuple[int, int]) -> Detections:
    """Tile-pixel detections -> frame pixels, dropping boxes cut by an edge of the tile inside the frame."""
    if len(detections) == 0:
        return detections
    xyxy = detections.xyxy.copy()
    left, top, right, bottom = tile.inner_edges(frame_hw)
    margin = CUT_MARGIN_PX
    cut = np.zeros(len(detections), dtype=bool)
    if left:
        cut |= xyxy[:, 0] <= margin
    if top:
        cut |= xyxy[:, 1] <= margin
    if right:
        cut |= xyxy[:, 2] >= tile.w - margin
    if bottom:
        cut |= xyxy[:, 3] >= tile.h - margin
    xyxy[:, [0, 2]] += tile.x
    xyxy[:, [1, 3]] += tile.y
    keep = ~cut
    return Detections(xyxy[keep], detections.score[keep], detections.class_id[keep])


def merge(
    parts: Sequence[Detections], iou_threshold: float, max_detections: int = MAX_DETECTIONS
) -> Detections:
    """Class-aware NMS over the whole-frame and the tiles' detections (all in frame pixels)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    if len(parts) == 1:
        return parts[0]
    xyxy = np.concatenate([p.xyxy for p in parts])
    score = np.concatenate([p.score for p in parts])
    class_id = np.concatenate([p.class_id for p in parts])
    keep = nms(xyxy, score, iou_threshold, class_id, max_keep=max_detections)
    return Detections(xyxy[keep], score[keep], class_id[keep])
