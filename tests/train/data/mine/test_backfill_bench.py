"""bench/backfill_labels.py on a made-up labelled drive: the numbers it reports are what its
definitions say, checked against the drive's own labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.edge.replay.runner import load_backend
from stopsign.train.data.mine.scan import ModelRun
from tests.bench_scripts import load_bench_script
from tests.train.data.mine.helpers import made_up_drives

SHIPPED = Path(__file__).resolve().parents[4] / "edge" / "assets" / "stopsign.onnx"
bench = load_bench_script("backfill_labels")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is not in this checkout")
def test_backfill_bench_on_a_labelled_drive(tmp_path):
    (drive,) = made_up_drives(tmp_path, count=1)
    backend, spec = load_backend(SHIPPED, "onnxruntime", 1)
    row = bench.evaluate_drive(drive, ModelRun(backend, spec), "none", spec.operating_threshold)
    labels = [json.loads(x) for x in (drive / "labels.jsonl").read_text().splitlines()]
    assert row["frames"] == len(labels) == 11
    assert row["labelled_frames"] == sum(1 for x in labels if x["boxes"])
    truth_before = sum(len(x["boxes"]) for x in labels[: row["first_confident"] or 0])
    assert sum(s["truth"] for s in row["stats"].values()) == truth_before
    for s in row["stats"].values():
        assert 0 <= s["tp"] <= s["proposals"]
    assert sum(s["found"] for s in row["stats"].values()) == sum(s["tp"] for s in row["stats"].values())
    if row["earliest_right"] is not None:
        assert row["frames_earlier"] == row["first_confident"] - row["earliest_right"] >= 0
    table = bench.markdown({"made up|none": [row]})
    assert "| made up | none |" in table and row["drive"] in table
