"""recipes/yolov4_compare: the GPU comparison script runs end to end (here on the CPU, tiny), and
its summary reports what is missing instead of guessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import draw_dataset

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "yolov4_compare"


def summarize(runs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RECIPE / "summarize.py"), str(runs), "--budget-min", "3", "--img", "416", *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_script_trains_evaluates_and_times_both_models(tmp_path: Path) -> None:
    draw_dataset(tmp_path / "data", n_train=8, n_val=6, size=64, n_confusers=2)
    env = dict(os.environ, PYTHON=sys.executable, DEVICE="cpu", IMG="64", BATCH="4", BUDGET_MIN="0.05",
               WORKERS="0", WORK=str(tmp_path / "work"))  # fmt: skip
    done = subprocess.run(
        ["bash", str(RECIPE / "gpu.sh"), str(tmp_path / "data"), str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=580, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == [
        "comparison.json",
        "comparison.md",
        "train_yolov4-tiny.log",
        "train_yolov5n.log",
    ]  # <= 8 files
    summary = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert summary["device"].startswith("cpu") and summary["img"] == 64
    assert [m["model"] for m in summary["models"]] == ["yolov4-tiny", "yolov5n"]
    for model in summary["models"]:
        assert model["epochs"] >= 1 and model["train_seconds"] > 0
        assert 0.0 <= model["map50"] <= 1.0 and model["gpu_p50_ms"] > 0
        assert sum(signs for _, signs in model["recall_by_input_px"].values()) > 0
        assert model["confuser_images"] == 2
    assert "missing" not in (tmp_path / "out" / "comparison.md").read_text()


def test_summary_names_what_is_missing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "cmp_yolov5n").mkdir(parents=True)
    (runs / "cmp_yolov5n" / "results.csv").write_text("epoch,metrics/mAP_0.5\n1,0.25\n2,0.5\n")
    (runs / "cmp_yolov4-tiny").mkdir()
    done = summarize(runs, "--json", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr
    lines = {
        line.split(" | ")[0].strip("| "): line for line in done.stdout.splitlines() if line.startswith("|")
    }
    assert lines["epochs that fitted (training seconds)"].endswith("| missing (missing s) | 2 (missing s) |")
    assert "| missing | 0.500 |" in lines["mAP@0.5, best epoch (trainer's validation)"]
    assert "unknown device" in done.stdout  # no device.txt: not claimed to be a GPU
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["models"][1]["best_map50_trainer"] == 0.5 and "map50" not in summary["models"][1]


def test_summary_without_runs_is_an_error(tmp_path: Path) -> None:
    done = summarize(tmp_path)
    assert done.returncode == 1 and "no cmp_* run folders" in done.stderr
