"""Stratified selection: allocation, letterbox identical to the runtime, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.select import (
    MANIFEST,
    SelectOptions,
    allocate,
    light_bucket,
    select_calibration_set,
    size_bucket,
)
from stopsign.edge.vision.letterbox import letterbox

OPTS = SelectOptions(n=16, input_size=(160, 160))


@given(
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(1, 40), min_size=1, max_size=12),
    st.integers(0, 300),
)
def test_allocate_sums_caps_and_covers(sizes: dict[str, int], n: int) -> None:
    keyed = {(k, "", "", ""): v for k, v in sizes.items()}
    alloc = allocate(keyed, n)
    assert sum(alloc.values()) == min(n, sum(sizes.values()))
    assert all(0 <= alloc[k] <= keyed[k] for k in keyed)
    if n >= len(keyed):
        assert all(alloc[k] >= 1 for k in keyed)


@pytest.mark.parametrize(
    ("px", "expected"),
    [(0.0, "none"), (10.0, "far"), (31.9, "far"), (32.0, "mid"), (95.9, "mid"), (96.0, "near")],
)
def test_size_bucket(px: float, expected: str) -> None:
    assert size_bucket(px, SelectOptions()) == expected


@pytest.mark.parametrize(
    ("luma", "expected"), [(0.0, "night"), (59.9, "night"), (60.0, "dusk"), (110.0, "day")]
)
def test_light_bucket(luma: float, expected: str) -> None:
    assert light_bucket(luma, SelectOptions()) == expected


def test_select_writes_runtime_letterboxed_set(dataset: Path, tmp_path: Path) -> None:
    result = select_calibration_set(dataset, tmp_path / "set", OPTS)
    manifest = json.loads((tmp_path / "set" / MANIFEST).read_text())
    assert manifest["n_selected"] == 16 and len(manifest["images"]) == 16
    # Every stratum of the data is represented (24 images, fewer than 16 strata here).
    assert set(result.strata_picked) == set(result.strata_available)
    assert {r["role"] for r in manifest["images"]} == {"stop", "confuser", "negative"}
    assert {r["light"] for r in manifest["images"]} == {"day", "dusk", "night"}
    assert {r["size"] for r in manifest["images"]} >= {"far", "mid", "near"}
    for record in manifest["images"][:4]:
        written = cv2.imread(str(tmp_path / "set" / record["file"]))
        expected, _ = letterbox(cv2.imread(record["original"]), (160, 160), 114)
        np.testing.assert_array_equal(written, expected)
    listed = (tmp_path / "set" / "calibration.txt").read_text().splitlines()
    assert listed == [r["original"] for r in manifest["images"]]


def test_select_is_deterministic_and_rerunnable(dataset: Path, tmp_path: Path) -> None:
    a = select_calibration_set(dataset, tmp_path / "set", OPTS)
    b = select_calibration_set(dataset, tmp_path / "set", OPTS)  # overwrites its own previous set
    assert [c.entry.path for c in a.picked] == [c.entry.path for c in b.picked]


def test_plain_folder_of_images(dataset: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(dataset / "images", plain)
    result = select_calibration_set(plain, tmp_path / "set", SelectOptions(n=10, input_size=(160, 160)))
    assert len(result.picked) == 10
    assert {c.entry.role for c in result.picked} == {"unlabelled"}


@pytest.mark.parametrize(
    ("n", "corrupt", "match"),
    [
        (100, False, r"only 24 usable image\(s\) but --n 100"),
        (4, False, r"--n 4 is below the minimum of 8"),
        (16, True, r"1 unreadable image\(s\): .*broken\.jpg"),
    ],
)
def test_select_errors(dataset: Path, tmp_path: Path, n: int, corrupt: bool, match: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    if corrupt:
        (data / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match=match):
        select_calibration_set(data, tmp_path / "set", SelectOptions(n=n, input_size=(160, 160)))


def test_skip_unreadable_records_them(dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    (data / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    options = SelectOptions(n=16, input_size=(160, 160), skip_unreadable=True)
    select_calibration_set(data, tmp_path / "set", options)
    manifest = json.loads((tmp_path / "set" / MANIFEST).read_text())
    assert [Path(p).name for p in manifest["unreadable_skipped"]] == ["broken.jpg"]


def test_refuses_foreign_output_folder(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(CalibrationError, match="not empty and is not a calibration set"):
        select_calibration_set(dataset, tmp_path / "busy", OPTS)


def test_bad_label_line_named(dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    (data / "labels" / "img000.txt").write_text("0 0.5 0.5 0.1 0.1\n0 2.0 0.5 0.1\n")
    with pytest.raises(CalibrationError, match=r"img000\.txt:2: "):
        select_calibration_set(data, tmp_path / "set", OPTS)
