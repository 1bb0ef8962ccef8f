from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.edge.model.spec import ModelSpec, ModelSpecError


def test_round_trip_through_json(tmp_path: Path) -> None:
    spec = ModelSpec(
        class_names=["stop_sign"], input_size=(416, 416), operating_threshold=0.37, metrics={"map50": 0.9}
    )
    path = spec.save(tmp_path / "spec.json")
    loaded = ModelSpec.load(path)
    assert loaded == spec
    assert loaded.num_outputs == 3 * (52 * 52 + 26 * 26 + 13 * 13)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"class_names": []}, "class_names"),
        ({"input_size": (400, 416)}, "multiple of the largest stride"),
        ({"operating_threshold": 1.5}, "operating_threshold"),
        ({"nms_iou": float("nan")}, "nms_iou"),
        ({"output_layout": "yolov8"}, "output_layout"),
        ({"precision": "int4"}, "precision"),
        ({"color_order": "RGBA"}, "color_order"),
        ({"anchors": ((10, 13),)}, "anchors"),
        ({"spec_version": 99}, "newer"),
    ],
)
def test_invalid_values_name_the_field(changes: dict, message: str) -> None:
    data = ModelSpec(class_names=["stop_sign"]).to_dict()
    data.update(changes)
    with pytest.raises(ModelSpecError, match=message):
        ModelSpec.from_dict(data)


def test_unknown_keys_and_bad_json_are_errors(tmp_path: Path) -> None:
    data = ModelSpec(class_names=["stop_sign"]).to_dict() | {"confidence": 0.5}
    with pytest.raises(ModelSpecError, match=r"unknown ModelSpec keys \['confidence'\]"):
        ModelSpec.from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelSpecError, match="bad.json: not valid JSON"):
        ModelSpec.load(bad)
    with pytest.raises(ModelSpecError, match="missing required key"):
        ModelSpec.from_json(json.dumps({"input_size": [416, 416]}))
