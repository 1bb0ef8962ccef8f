"""Fixtures for the training tests: tiny synthetic detection datasets drawn with OpenCV."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml


def draw_dataset(
    root: Path,
    n_train: int = 16,
    n_val: int = 8,
    size: int = 64,
    n_confusers: int = 2,
    seed: int = 0,
    names: tuple[str, ...] = ("stop_sign",),
) -> Path:
    """Red octagons (class 0) on noisy backgrounds; confusers are red circles without labels.

    Writes root/images, root/labels, root/train.txt, root/val.txt, root/sources.jsonl and
    root/data.yaml; returns the data.yaml path.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    train, val, sources = [], [], []
    total = n_train + n_val
    for i in range(total):
        image = rng.integers(60, 140, (size, size, 3), dtype=np.uint8)
        lines = []
        is_val = i >= n_train
        confuser = is_val and i - n_train < n_confusers
        if confuser:
            cv2.circle(image, (size // 2, size // 2), size // 5, (30, 30, 220), -1)
        else:
            for _ in range(int(rng.integers(1, 3))):
                side = int(rng.integers(size // 5, size // 2))
                x0 = int(rng.integers(0, size - side))
                y0 = int(rng.integers(0, size - side))
                c = side / 2
                angles = np.arange(8) * np.pi / 4 + np.pi / 8
                pts = np.stack([x0 + c + c * np.cos(angles), y0 + c + c * np.sin(angles)], 1).astype(np.int32)
                cv2.fillPoly(image, [pts], (30, 30, 220))
                xs, ys = pts[:, 0], pts[:, 1]
                x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
                cls = int(rng.integers(0, len(names)))
                lines.append(
                    f"{cls} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
                    f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}\n"
                )
        name = f"img{i:03d}.jpg"
        cv2.imwrite(str(root / "images" / name), image)
        (root / "labels" / f"img{i:03d}.txt").write_text("".join(lines))
        (val if is_val else train).append(f"images/{name}")
        role = "confuser" if confuser else "stop"
        source = "synthA" if i % 2 == 0 else "synthB"
        sources.append(
            json.dumps(
                {
                    "image": f"images/{name}",
                    "source": source,
                    "original": name,
                    "licence": "test",
                    "role": role,
                    "n_stop": len(lines),
                }
            )
        )
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("\n".join(val) + "\n")
    (root / "sources.jsonl").write_text("\n".join(sources) + "\n")
    doc = {"path": ".", "train": "train.txt", "val": "val.txt", "nc": len(names), "names": list(names)}
    (root / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "data.yaml"


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """16 train / 8 val images of 64 px (2 val confusers), one class; returns data.yaml."""
    return draw_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def draw_data():
    """The :func:`draw_dataset` function, for tests that need other sizes or class counts."""
    return draw_dataset
