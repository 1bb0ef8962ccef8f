"""TrackerConfig: validation, the model's threshold, intrinsics and the start-up line."""

from __future__ import annotations

import pytest

from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.tracking import TrackerConfig, TrackerConfigError
from stopsign.edge.tracking.distance import CameraIntrinsics


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"confirm_hits": 2.5}, "confirm_hits: must be an integer"),
        ({"confirm_window": True}, "confirm_window: must be an integer"),
        ({"iou_gate": float("nan")}, "iou_gate"),
        ({"score_alpha": -0.1}, "score_alpha"),
        ({"max_scale_change": 0.5}, "max_scale_change"),
        ({"sign_size_m": 0.0}, "sign_size_m"),
        ({"speed_max_age_s": -1.0}, "speed_max_age_s"),
        ({"intrinsics": {"fx": 1000}}, "intrinsics"),
    ],
)
def test_out_of_range_values_are_named(changes: dict, message: str) -> None:
    with pytest.raises(TrackerConfigError, match=message):
        TrackerConfig(**changes)


def test_from_spec_enters_below_the_operating_threshold() -> None:
    spec = ModelSpec(class_names=["stop_sign"], operating_threshold=0.42)
    config = TrackerConfig.from_spec(spec)
    assert config.enter_threshold == pytest.approx(0.8 * 0.42, abs=1e-4)
    assert config.stay_threshold == pytest.approx(0.6 * 0.8 * 0.42, abs=1e-4)
    given = TrackerConfig.from_spec(spec, enter_threshold=0.3)
    assert (given.enter_threshold, given.stay_threshold) == (0.3, pytest.approx(0.18))
    assert TrackerConfig.from_spec(spec, stay_threshold=0.2, confirm_hits=2).confirm_hits == 2
    with pytest.raises(TrackerConfigError, match="must not exceed"):
        TrackerConfig.from_spec(spec, stay_threshold=0.9)
    with pytest.raises(TrackerConfigError, match="enter_threshold"):
        TrackerConfig.from_spec(spec, enter_threshold=1.5)


@pytest.mark.parametrize(
    ("focal_px", "intrinsics", "expected"),
    [
        (None, None, None),  # unknown: the distance stays null
        (800.0, None, 800.0),
        (None, CameraIntrinsics(fx=900.0, fy=910.0), 910.0),  # heights use fy
        (800.0, CameraIntrinsics(fx=900.0, fy=910.0), 800.0),  # an explicit focal length wins
    ],
)
def test_effective_focal_length(
    focal_px: float | None, intrinsics: CameraIntrinsics | None, expected: float | None
) -> None:
    assert TrackerConfig(focal_px=focal_px, intrinsics=intrinsics).effective_focal_px == expected


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({}, None),
        ({"intrinsics": None}, None),
        ({"intrinsics": {"fx": 1000.0}}, CameraIntrinsics(1000.0, 1000.0)),
        (
            {"intrinsics": {"fy": 990.0, "fx": 1000.0, "cx": 640, "cy": 360}},
            CameraIntrinsics(1000.0, 990.0, 640, 360),
        ),
    ],
)
def test_intrinsics_from_drive_meta(meta: dict, expected: CameraIntrinsics | None) -> None:
    assert CameraIntrinsics.from_meta(meta) == expected


@pytest.mark.parametrize("bad", [0.0, -5.0, float("inf")])
def test_bad_intrinsics_are_named(bad: float) -> None:
    with pytest.raises(ValueError, match="fy"):
        CameraIntrinsics(fx=1000.0, fy=bad)


def test_describe_prints_every_parameter() -> None:
    config = TrackerConfig(intrinsics=CameraIntrinsics(fx=900.0, fy=910.0))
    line = config.describe()
    for name in TrackerConfig.__dataclass_fields__:
        assert f"{name}=" in line
    assert "distance_focal_px=910.0" in line
