"""YOLOv5 compatibility: exact parameter counts and state-dict key names of the official models."""

from __future__ import annotations

import pytest
import torch

from stopsign.train.model import ModelConfigError, build_model
from stopsign.train.model.yolo import parse_cfg_text


@pytest.mark.parametrize(
    ("cfg", "nc", "params"),
    [
        ("custom_yolov5s", 1, 7_255_094),  # the report's model
        ("yolov5n", 1, 1_765_270),
        ("yolov5s", 1, 7_022_326),
        ("yolov5n", 80, 1_872_157),  # official COCO yolov5n
    ],
)
def test_parameter_counts_match_yolov5(cfg: str, nc: int, params: int) -> None:
    assert build_model(cfg, nc).num_parameters() == params


def test_state_dict_keys_use_yolov5_names() -> None:
    keys = list(build_model("yolov5n", 1).state_dict())
    assert keys[0] == "model.0.conv.weight"
    assert keys[-1] == "model.24.m.2.bias"
    for expected in (
        "model.0.bn.running_mean",
        "model.2.m.0.cv1.conv.weight",
        "model.9.cv2.bn.bias",
        "model.24.anchors",
    ):
        assert expected in keys
    csp_keys = build_model("custom_yolov5s", 1).state_dict()
    for expected in (
        "model.0.conv.conv.weight",
        "model.2.cv2.weight",
        "model.2.bn.running_var",
        "model.8.cv2.conv.weight",
    ):
        assert expected in csp_keys


def test_forward_shapes_strides_and_anchors() -> None:
    model = build_model("yolov5n", 2).eval()
    assert model.strides == [8, 16, 32]
    assert model.anchors_pixels()[0] == [10, 13, 16, 30, 33, 23]
    with torch.no_grad():
        decoded, maps = model(torch.rand(2, 3, 96, 128))
    assert decoded.shape == (2, 3 * (12 * 16 + 6 * 8 + 3 * 4), 7)
    assert [m.shape[2:4] for m in maps] == [(12, 16), (6, 8), (3, 4)]
    assert decoded[..., 4:].min() >= 0 and decoded[..., 4:].max() <= 1


def test_bias_priors_set_objectness_low() -> None:
    detect = build_model("yolov5n", 1).detect
    objectness_bias = detect.m[0].bias.view(3, -1)[:, 4]
    # log(8 / (640 / 8)^2) = -6.68, plus the conv's own small uniform init.
    assert torch.allclose(objectness_bias, torch.full((3,), -6.68), atol=0.2)


def test_fused_model_gives_the_same_output() -> None:
    model = build_model("yolov5s", 1)
    # Non-trivial BN statistics, so fusion has something to fold.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64))
    model.eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse()(x)[0]
    assert not any(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.modules() if type(m).__name__ != "BottleneckCSP"
    )
    assert torch.allclose(before, after, atol=1e-3, rtol=1e-3)


def test_template_yaml_needs_number_of_classes() -> None:
    with pytest.raises(ModelConfigError, match="give the number of classes"):
        build_model("custom_yolov5s")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nc: 1\n", "missing key 'depth_multiple'"),
        (
            "nc: 1\ndepth_multiple: 1\nwidth_multiple: 1\nanchors: [[1,2,3,4,5,6]]\nbackbone: [[-1, 1, Eval, [1]]]\nhead: []",
            "unknown module 'Eval'",
        ),
        (
            "nc: 1\ndepth_multiple: 1\nwidth_multiple: 1\nanchors: [[1,2,3,4,5,6]]\nbackbone: [[5, 1, Conv, [8]]]\nhead: []",
            "points past",
        ),
        ("nc: [1\n", "invalid YAML"),
    ],
)
def test_malformed_configs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        build_model(parse_cfg_text(text), nc=1)


def test_unknown_config_name_lists_shipped_ones() -> None:
    with pytest.raises(ModelConfigError, match="yolov5n"):
        build_model("yolov9000")
