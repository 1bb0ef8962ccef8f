"""RunLog: results.csv after every epoch; results.png after an epoch once the interval has passed,
and at close when it lacks rows (real matplotlib drawings, a scripted clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stopsign.train.run_log import COLUMNS, RunLog, read_results


def row(epoch: int) -> dict[str, float]:
    return {key: float(epoch if key == "epoch" else 0.1 * epoch) for key in COLUMNS}


def test_results_png_is_redrawn_once_the_interval_has_passed_and_at_close(tmp_path: Path) -> None:
    now = [0.0]
    log = RunLog(tmp_path, tensorboard=False, plot_interval_s=60.0, clock=lambda: now[0])
    png = tmp_path / "results.png"
    now[0] = 30.0
    log.add(row(1))
    assert [r["epoch"] for r in read_results(tmp_path / "results.csv")] == [1]
    assert not png.exists()  # 30 s since the log opened: not drawn yet
    now[0] = 61.0
    log.add(row(2))
    two_rows = png.read_bytes()
    now[0] = 90.0
    log.add(row(3))
    assert [r["epoch"] for r in read_results(tmp_path / "results.csv")] == [1, 2, 3]
    assert png.read_bytes() == two_rows  # 29 s since the last drawing
    log.close()
    assert png.read_bytes() != two_rows  # drawn again, with epoch 3


def test_close_leaves_an_up_to_date_drawing_alone(tmp_path: Path) -> None:
    log = RunLog(tmp_path, tensorboard=False, plot_interval_s=0.0)
    log.add(row(1))
    png = tmp_path / "results.png"
    assert png.stat().st_size > 0  # interval 0: drawn after every epoch
    png.unlink()
    log.close()
    assert not png.exists()  # it held every row already: not drawn again


def test_a_negative_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plot_interval_s must be >= 0 seconds, got -1"):
        RunLog(tmp_path, tensorboard=False, plot_interval_s=-1.0)
