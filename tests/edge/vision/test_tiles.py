"""Tile geometry: parsing and round trip, the auto plans, frame <-> tile mapping, cut boxes, NMS across tiles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.tiles import (
    GRID_OVERLAP,
    HORIZON_ABOVE,
    Tile,
    TileConfig,
    TileConfigError,
    grid_tiles,
    horizon_band_tiles,
    merge,
    tile_to_frame,
)

INPUT = (416, 416)


def dets(*rows: tuple[float, float, float, float, float]) -> Detections:
    array = np.array(rows, np.float32).reshape(-1, 5)
    return Detections(array[:, :4], array[:, 4], np.zeros(len(array), np.int32))


@pytest.mark.parametrize(
    ("text", "mode", "regions", "fractions"),
    [
        (None, "none", (), False),
        ("none", "none", (), False),
        (" AUTO ", "auto", (), False),
        ("0,100,416,416", "manual", ((0, 100, 416, 416),), False),
        ("0,100,416,416;500,100,416,416;", "manual", ((0, 100, 416, 416), (500, 100, 416, 416)), False),
        ("0.25,0.3,0.5,0.4", "manual", ((0.25, 0.3, 0.5, 0.4),), True),
        ("0.0,0.0,1.0,1.0", "manual", ((0.0, 0.0, 1.0, 1.0),), True),
    ],
)
def test_parse(text: str | None, mode: str, regions: tuple, fractions: bool) -> None:
    config = TileConfig.parse(text)
    assert (config.mode, config.regions, config.fractions) == (mode, regions, fractions)
    assert config.enabled == (mode != "none")
    assert TileConfig.parse(config.text()) == config  # the round trip


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("tiles", "four numbers"),
        ("1,2,3", "four numbers"),
        ("a,b,c,d", "not four numbers"),
        ("-1,0,10,10", "x, y >= 0"),
        ("0,0,0,10", "w, h > 0"),
        ("0.5,0.5,0.6,0.2", "within the frame"),
        ("0,0,10.5,10", "within the frame"),
        ("0,0,100,100;0.1,0.1,0.5,0.5", "mixes pixel and fractional"),
        (";", "give 'none', 'auto'"),
        ("0,0,nan,10", "not four numbers|x, y >= 0"),
    ],
)
def test_parse_errors_name_the_value(text: str, why: str) -> None:
    with pytest.raises(TileConfigError, match=why):
        TileConfig.parse(text)


def test_manual_regions_are_clipped_to_the_frame_and_scaled_from_fractions() -> None:
    pixels = TileConfig.parse("1000,600,416,416;5000,5000,10,10").plan((720, 1280), INPUT)
    assert pixels == [Tile(1000, 600, 280, 120)]  # the second lies off the frame: skipped
    fractions = TileConfig.parse("0.25,0.5,0.5,0.25").plan((720, 1280), INPUT)
    assert fractions == [Tile(320, 360, 640, 180)]


@pytest.mark.parametrize(
    ("frame_hw", "principal", "expected"),
    [
        ((416, 416), None, []),  # the frame fits the input: the whole-frame pass is native
        ((360, 400), None, []),
        ((720, 1280), None, [Tile(224, 48, 416, 416), Tile(640, 48, 416, 416)]),
        # off-centre principal point: the band follows it, clamped to the frame
        ((720, 1280), (1200.0, 300.0), [Tile(448, 0, 416, 416), Tile(864, 0, 416, 416)]),
        # narrow frame: two tiles overlap to cover the whole width
        ((360, 640), (320.0, 180.0), [Tile(0, 0, 416, 360), Tile(224, 0, 416, 360)]),
    ],
)
def test_horizon_band(
    frame_hw: tuple[int, int], principal: tuple[float, float] | None, expected: list[Tile]
) -> None:
    assert horizon_band_tiles(frame_hw, INPUT, principal) == expected


def test_horizon_band_sits_mostly_above_the_horizon() -> None:
    (left, _right) = horizon_band_tiles((1080, 1920), INPUT)
    horizon = 540
    assert left.y == round(horizon - HORIZON_ABOVE * 416)
    assert left.y < horizon < left.y + left.h


@pytest.mark.parametrize("frame_hw", [(800, 1360), (640, 640), (417, 2000), (3000, 4000)])
def test_grid_covers_the_image_with_overlap(frame_hw: tuple[int, int]) -> None:
    tiles = grid_tiles(frame_hw, INPUT)
    height, width = frame_hw
    covered = np.zeros(frame_hw, bool)
    for tile in tiles:
        assert tile.x + tile.w <= width and tile.y + tile.h <= height
        covered[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] = True
    assert covered.all()
    assert len(tiles) <= 24
    xs = sorted({t.x for t in tiles})
    for a, b in itertools.pairwise(xs):  # neighbours overlap by at least GRID_OVERLAP of a tile
        assert a + tiles[0].w - b >= GRID_OVERLAP * tiles[0].w - 1


def test_grid_is_empty_for_a_small_image() -> None:
    assert grid_tiles((300, 400), INPUT) == []
    assert TileConfig("auto").plan((300, 400), INPUT, still=True) == []


@pytest.mark.parametrize(
    ("box", "kept"),
    [
        ((100, 100, 120, 120), True),  # inside
        ((0, 100, 20, 120), False),  # on the left edge, which lies inside the frame: cut
        ((100, 0, 120, 20), True),  # on the top edge, which is the frame's own edge: whole
        ((396, 100, 416, 120), False),  # right edge inside the frame
        ((100, 396, 120, 416), False),  # bottom edge inside the frame
        ((2.5, 100, 20, 120), True),  # just beyond the margin
    ],
)
def test_tile_to_frame_moves_boxes_and_drops_cut_ones(box: tuple[float, ...], kept: bool) -> None:
    tile = Tile(500, 0, 416, 416)  # top edge on the frame's top, the other three inside a 1280x720 frame
    out = tile_to_frame(dets((*box, 0.9)), tile, (720, 1280))
    if kept:
        np.testing.assert_allclose(out.xyxy[0], np.add(box, (500, 0, 500, 0)))
    else:
        assert len(out) == 0


def test_tile_to_frame_of_nothing() -> None:
    assert len(tile_to_frame(Detections.empty(), Tile(0, 0, 10, 10), (20, 20))) == 0


@pytest.mark.parametrize(
    ("parts", "expected_scores"),
    [
        ([], []),
        ([dets(), dets()], []),
        ([dets((10, 10, 30, 30, 0.6))], [0.6]),
        # the same sign from the whole frame and from a tile (IoU 1): one box, the higher score
        ([dets((10, 10, 30, 30, 0.6)), dets((10, 10, 30, 30, 0.8))], [0.8]),
        # IoU 0: both stay
        ([dets((10, 10, 30, 30, 0.6)), dets((40, 40, 60, 60, 0.8))], [0.8, 0.6]),
        # ties keep the first part's box
        ([dets((10, 10, 30, 30, 0.7)), dets((11, 11, 31, 31, 0.7))], [0.7]),
    ],
)
def test_merge_is_nms_across_tiles(parts: list[Detections], expected_scores: list[float]) -> None:
    merged = merge(parts, iou_threshold=0.45)
    np.testing.assert_allclose(merged.score, expected_scores)
    if len(parts) == 2 and len(expected_scores) == 1 and parts[0].score[0] == parts[1].score[0]:
        np.testing.assert_allclose(merged.xyxy[0], parts[0].xyxy[0])


def test_merge_keeps_classes_apart() -> None:
    a = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), np.array([0]))
    b = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.8], np.float32), np.array([1]))
    assert len(merge([a, b], 0.45)) == 2


def test_tile_rejects_impossible_regions() -> None:
    with pytest.raises(TileConfigError):
        Tile(0, 0, 0, 10)
    with pytest.raises(TileConfigError):
        Tile(-1, 0, 10, 10)
