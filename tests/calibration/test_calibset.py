"""Calibration set loading: runtime preprocessing, size checks, too few / unreadable images."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.letterbox import letterbox, to_network_input

SPEC = ModelSpec(class_names=["stop_sign"], input_size=(160, 160))


def test_batches_are_runtime_input(calib_dir: Path) -> None:
    calib = CalibrationSet.load(calib_dir, SPEC)
    batches = list(calib.batches(5))
    assert [b.shape for b in batches] == [(5, 3, 160, 160)] * 3 + [(1, 3, 160, 160)]
    assert batches[0].dtype == np.float32 and batches[0].min() >= 0.0 and batches[0].max() <= 1.0
    expected = to_network_input(cv2.imread(str(calib.files[0])), SPEC.scale, rgb=True)
    np.testing.assert_array_equal(batches[0][:1], expected)


def test_plain_folder_is_letterboxed_on_the_fly(dataset: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(dataset / "images", plain)
    calib = CalibrationSet.load(plain, SPEC)
    assert not calib.letterboxed and len(calib) == 24
    boxed, _ = letterbox(cv2.imread(str(calib.files[2])), (160, 160), 114)
    np.testing.assert_array_equal(calib.image(2), to_network_input(boxed, SPEC.scale, rgb=True))


def test_wrong_input_size(calib_dir: Path) -> None:
    with pytest.raises(CalibrationError, match=r"letterboxed to 160x160 but the model takes 320x320"):
        CalibrationSet.load(calib_dir, SPEC.replace(input_size=(320, 320)))


@pytest.mark.parametrize(
    ("n_good", "n_bad", "match"),
    [
        (3, 0, r"3 calibration image\(s\), need at least 8"),
        (0, 0, r"0 calibration image\(s\)"),
        (9, 1, r"not decodable as images: .*junk\.png"),
    ],
)
def test_too_few_or_unreadable(dataset: Path, tmp_path: Path, n_good: int, n_bad: int, match: str) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for image in sorted((dataset / "images").iterdir())[:n_good]:
        shutil.copy(image, folder / image.name)
    for i in range(n_bad):
        (folder / f"junk{'' if i == 0 else i}.png").write_bytes(b"\x00" * 10)
    with pytest.raises(CalibrationError, match=match):
        CalibrationSet.load(folder, SPEC)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="no such calibration folder"):
        CalibrationSet.load(tmp_path / "nope", SPEC)
