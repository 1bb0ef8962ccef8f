"""Fixtures for the data tests: tiny canonical datasets built in tmp_path, and the shared real data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.train.data import layout
from stopsign.train.data.layout import SourceRecord
from stopsign.train.data.synth.signs import stop_sign

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "real").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (a fresh clone has no ../shared)")
    return SHARED_DATA.resolve()


def photo(seed: int, size: tuple[int, int] = (96, 128), with_stop: bool = False) -> np.ndarray:
    """A distinct (h, w, 3) uint8 picture; with_stop pastes a red octagon at (32..80, 24..72)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    if with_stop:
        sign = stop_sign(size=48)
        roi = img[24:72, 32:80].astype(np.float32)
        a = sign.alpha[..., None]
        img[24:72, 32:80] = (roi + a * (sign.bgr - roi)).astype(np.uint8)
    return img


DatasetFactory = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> DatasetFactory:
    """Build a valid canonical dataset: ``n_stop`` photos with one sign, ``n_neg`` negatives."""

    def build(name: str = "ds", n_stop: int = 4, n_neg: int = 4, source: str = "tiny") -> Path:
        root = tmp_path / name
        (root / layout.IMAGES).mkdir(parents=True)
        (root / layout.LABELS).mkdir()
        records = []
        for i in range(n_stop + n_neg):
            is_stop = i < n_stop
            stem = f"{source}_{i:03d}"
            cv2.imwrite(
                str(root / layout.IMAGES / f"{stem}.jpg"),
                photo(i + 100 * sum(map(ord, name)), with_stop=is_stop),
            )
            boxes = (
                layout.xyxy_to_yolo(np.array([[32, 24, 80, 72]]), 128, 96) if is_stop else np.zeros((0, 4))
            )
            (root / layout.LABELS / f"{stem}.txt").write_text(layout.format_label_lines(boxes))
            confusers = [] if is_stop else [{"name": "do_not_enter", "xyxy": [0.1, 0.1, 0.3, 0.4]}]
            role = "stop" if is_stop else ("confuser" if i % 2 else "negative")
            records.append(
                SourceRecord(f"{stem}.jpg", source, f"/orig/{stem}.jpg", "CC0", role, int(is_stop), confusers)
            )
        layout.write_sources(root, records)
        names = [f"{layout.IMAGES}/{r.image}" for r in records]
        layout.write_list(root, layout.TRAIN_LIST, names[::2])
        layout.write_list(root, layout.VAL_LIST, names[1::2])
        layout.write_data_yaml(root)
        return root

    return build
