"""Darknet cfg parsing: the shipped families build, and bad cfgs fail naming file, line and section."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stopsign.train.darknet.cfg import DarknetCfgError, load_cfg, parse_cfg, with_classes
from stopsign.train.darknet.model import DarknetModel
from tests.train.darknet.helpers import FAMILIES, shipped_cfg

# (layers, conv layers, yolo strides) of the published networks.
SHAPES = {
    "yolov4-tiny": (38, 21, [32, 16]),
    "yolov4-tiny-3l": (45, 24, [32, 16, 8]),
    "yolov3-tiny": (24, 13, [32, 16]),
    "yolov3": (107, 75, [32, 16, 8]),
    "yolov4": (162, 110, [8, 16, 32]),
}

TINY = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=1
num=3
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_families_build(family: str) -> None:
    model = DarknetModel(parse_cfg(shipped_cfg(family, 3), f"{family}.cfg"))
    layers, convs, strides = SHAPES[family]
    assert len(model.layers) == layers
    assert len(model.conv_layers()) == convs
    assert model.strides == strides
    assert model.nc == 3
    assert model.resize == "stretch"
    model.eval().detect.export = True
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, sum(3 * (64 // s) ** 2 for s in strides), 8)


def test_shipped_name_and_placeholder_take_nc() -> None:
    assert DarknetModel("yolov4-tiny", nc=5).nc == 5
    with pytest.raises(DarknetCfgError, match="give the number of classes"):
        DarknetModel("yolov4-tiny")


def test_unknown_layer_names_section_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text(TINY.replace("[yolo]", "[dropout]\nprobability=.5\n\n[yolo]"))
    with pytest.raises(
        DarknetCfgError, match=r"bad\.cfg:21: \[dropout\] \(layer 2\): unsupported layer type"
    ):
        load_cfg(path)


def test_unknown_option_names_section_and_line() -> None:
    text = TINY.replace("activation=leaky", "activation=leaky\ndilation=2")
    with pytest.raises(
        DarknetCfgError, match=r"x\.cfg:13: \[convolutional\] \(layer 0\): unsupported option 'dilation'"
    ):
        parse_cfg(text, "x.cfg")


def test_unsupported_value_names_section_and_line() -> None:
    text = TINY.replace("activation=leaky", "activation=hardtan")
    with pytest.raises(
        DarknetCfgError, match=r"x\.cfg:12: \[convolutional\] \(layer 0\): unsupported activation='hardtan'"
    ):
        parse_cfg(text, "x.cfg")


def test_filters_before_yolo_checked() -> None:
    cfg = parse_cfg(TINY.replace("filters=18", "filters=21"), "x.cfg")
    with pytest.raises(DarknetCfgError, match=r"x\.cfg:21: \[yolo\] \(layer 2\).*21 channels.*needs 18"):
        DarknetModel(cfg)


def test_route_to_a_later_layer_is_an_error() -> None:
    text = TINY.replace("[yolo]", "[route]\nlayers=5\n\n[yolo]")
    with pytest.raises(DarknetCfgError, match=r"x\.cfg:22: \[route\] \(layer 2\): layers refers to layer 5"):
        DarknetModel(parse_cfg(text, "x.cfg"))


def test_structure_errors() -> None:
    with pytest.raises(DarknetCfgError, match="first section must be"):
        parse_cfg("[convolutional]\nfilters=3\n")
    with pytest.raises(DarknetCfgError, match=r"<cfg>:2: option 'width=3' before"):
        parse_cfg("\nwidth=3\n")
    with pytest.raises(DarknetCfgError, match="no \\[yolo\\] layer"):
        parse_cfg("[net]\nwidth=32\n[convolutional]\nfilters=3\n")
    with pytest.raises(DarknetCfgError, match=r"x\.cfg:4: \[net\].*'width' given twice \(first on line 2\)"):
        parse_cfg("[net]\nwidth=32\n\nwidth=64\n", "x.cfg")


def test_with_classes_rewrites_classes_and_filters() -> None:
    cfg = parse_cfg(shipped_cfg("yolov3", 80), "yolov3.cfg")
    text = with_classes(cfg, 1)
    model = DarknetModel(parse_cfg(text, "yolov3.cfg"))
    assert model.nc == 1
    assert text.count("filters=18") == 3 and "classes=80\n" not in text
    assert DarknetModel(cfg, nc=4).nc == 4


def test_maxpool_stride_one_keeps_size_and_spp_is_centred() -> None:
    from stopsign.train.darknet.layers import DarknetMaxPool

    x = torch.arange(16.0).view(1, 1, 4, 4)
    same = DarknetMaxPool(2, 1, 1)(x)  # yolov3-tiny's layer 11: window right/below, edge repeats
    assert same.shape == x.shape
    assert same[0, 0, 0, 0] == 5 and same[0, 0, 3, 3] == 15 and same[0, 0, 3, 0] == 13
    spp = DarknetMaxPool(5, 1, 4)(x)
    assert spp.shape == x.shape and spp[0, 0, 0, 0] == 10  # rows/cols 0..2 around (0, 0)
    half = DarknetMaxPool(2, 2, 1)(x)
    assert half.shape == (1, 1, 2, 2) and half[0, 0, 0, 0] == 5


@pytest.mark.parametrize(
    ("size", "stride", "padding"), [(2, 2, 1), (3, 2, 2), (2, 2, 0), (3, 1, 2), (2, 1, 1)]
)
@pytest.mark.parametrize("n", [5, 6, 7])
def test_maxpool_fast_paths_equal_the_general_geometry(size: int, stride: int, padding: int, n: int) -> None:
    from stopsign.train.darknet.layers import DarknetMaxPool

    pool = DarknetMaxPool(size, stride, padding)
    x = torch.randn(1, 2, n, n + 1)
    before = padding // 2
    expected = torch.full((1, 2, pool.out_size(n), pool.out_size(n + 1)), float("-inf"))
    for i in range(
        expected.shape[2]
    ):  # Darknet's loop: window from i * stride - before, padded cells skipped
        for j in range(expected.shape[3]):
            y0, x0 = i * stride - before, j * stride - before
            window = x[..., max(y0, 0) : y0 + size, max(x0, 0) : x0 + size]
            expected[..., i, j] = window.amax(dim=(-2, -1))
    torch.testing.assert_close(pool(x), expected)
