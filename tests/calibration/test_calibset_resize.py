"""Calibration sets follow ModelSpec.resize: a stretch model's set is stretched, and a set made
for the other mode is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.select import SelectOptions, select_calibration_set
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.letterbox import to_network_input

STRETCH = ModelSpec(class_names=["stop_sign"], input_size=(160, 160), resize="stretch")


def test_stretch_set_is_stretched_and_recorded(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    select_calibration_set(dataset, out, SelectOptions(n=8, input_size=(160, 160), resize="stretch"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resize"] == "stretch"
    first = manifest["images"][0]
    expected = cv2.resize(cv2.imread(first["original"]), (160, 160), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(cv2.imread(str(out / first["file"])), expected)
    calib = CalibrationSet.load(out, STRETCH)
    assert len(calib) == 8
    with pytest.raises(CalibrationError, match=r"resize 'stretch' but the model uses 'letterbox'"):
        CalibrationSet.load(out, STRETCH.replace(resize="letterbox"))


def test_plain_folder_is_stretched_on_the_fly(dataset: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(dataset / "images", plain)
    calib = CalibrationSet.load(plain, STRETCH)
    image = cv2.imread(str(calib.files[1]))
    expected = to_network_input(cv2.resize(image, (160, 160), interpolation=cv2.INTER_LINEAR), STRETCH.scale)
    np.testing.assert_array_equal(calib.image(1), expected)
