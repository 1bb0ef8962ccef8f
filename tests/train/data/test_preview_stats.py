from __future__ import annotations

from pathlib import Path

import cv2

from stopsign.train.data.cli import main
from stopsign.train.data.preview import preview_grid
from stopsign.train.data.stats import dataset_stats


def test_stats_counts(make_dataset, tmp_path: Path, capsys) -> None:
    root = make_dataset(n_stop=3, n_neg=5)
    stats = dataset_stats(root)
    assert (stats.images, stats.stop_boxes) == (8, 3)
    assert stats.per_source_role[("tiny", "stop")] == 3
    assert stats.split == {"train.txt": 4, "val.txt": 4}
    assert main(["stats", str(root), "--histogram", str(tmp_path / "h.png")]) == 0
    assert "stop boxes 3" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "h.png")) is not None


def test_preview_grid_draws_green_boxes(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(n_stop=2, n_neg=2)
    grid = preview_grid(root, n=4, cols=2, tile=64)
    assert grid.shape == (128, 128, 3)
    green = (grid[..., 1] == 255) & (grid[..., 0] == 0) & (grid[..., 2] == 0)
    assert green.sum() > 50
    assert main(["preview", str(root), "--out", str(tmp_path / "p.png"), "--n", "4"]) == 0
    assert cv2.imread(str(tmp_path / "p.png")) is not None
