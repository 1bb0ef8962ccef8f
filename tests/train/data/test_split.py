from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.check import check_dataset, errors
from stopsign.train.data.cli import main
from stopsign.train.data.split import dhash, near_duplicate_groups, split_dataset


def test_dhash_is_stable_under_small_changes() -> None:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (120, 90))
    brighter = cv2.convertScaleAbs(img, alpha=1.05, beta=3)
    other = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (120, 90))
    assert bin(dhash(img) ^ dhash(brighter)).count("1") <= 4
    assert bin(dhash(img) ^ dhash(other)).count("1") > 10


def test_groups_are_connected_components() -> None:
    hashes = np.array([0b0, 0b1, 0b11, 0xFFFF0000], dtype=np.uint64)
    groups = near_duplicate_groups(hashes, max_hamming=1)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_split_is_stratified_and_keeps_near_duplicates_together(make_dataset) -> None:
    root = make_dataset(n_stop=10, n_neg=10)
    # A near-duplicate of image 0 (slightly brighter re-encode) under a new name.
    img = cv2.imread(str(root / "images/tiny_000.jpg"))
    cv2.imwrite(str(root / "images/tiny_dup.jpg"), cv2.convertScaleAbs(img, alpha=1.03, beta=2))
    (root / "labels/tiny_dup.txt").write_text((root / "labels/tiny_000.txt").read_text())
    records = list(layout.read_sources(root).values())
    records.append(layout.SourceRecord("tiny_dup.jpg", "tiny", "/orig/dup.jpg", "CC0", "stop", 1))
    layout.write_sources(root, records)
    for seed in range(5):
        summary = split_dataset(root, val=0.3, seed=seed)
        train = set(layout.read_list(root, layout.TRAIN_LIST))
        val = set(layout.read_list(root, layout.VAL_LIST))
        assert ("images/tiny_000.jpg" in val) == ("images/tiny_dup.jpg" in val)
        assert len(train) + len(val) == 21 and not train & val
        assert all(v >= 1 for _, v in summary.per_stratum.values())  # every source/role in val
    assert errors(check_dataset(root)) == []


def test_split_cli_is_deterministic(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(n_stop=8, n_neg=8)
    assert main(["split", str(root), "--val", "0.25", "--seed", "4"]) == 0
    first = (root / "val.txt").read_text()
    assert main(["split", str(root), "--val", "0.25", "--seed", "4"]) == 0
    assert (root / "val.txt").read_text() == first
    assert main(["split", str(root), "--val", "1.5"]) == 2
