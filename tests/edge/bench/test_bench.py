"""edge-bench: the JSON layout, and numbers consistent with what happened (never a speed threshold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.edge.benchmark import bench_e2e, bench_model
from stopsign.edge.cli import bench as bench_cli
from stopsign.export.onnx_export import export_onnx
from stopsign.train.checkpoint import spec_for_model
from stopsign.train.model import build_model
from tests.edge.helpers import requires_gstreamer

FRAMES = 20
SOURCE = "test://?pattern=snow&size=320x240&live=0"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = build_model("yolov5n", 1).eval()
    return export_onnx(net, spec_for_model(net, ["stop_sign"], 160), tmp_path_factory.mktemp("m") / "m.onnx")


def test_model_only_numbers_are_consistent(model: Path) -> None:
    run = bench_model(model, "onnxruntime", FRAMES, warmup=3)
    assert run.frames == FRAMES == len(run.latencies_ms)
    lat = run.latency_summary()
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert run.fps == pytest.approx(FRAMES / run.wall_s, rel=0.1)
    assert sum(run.latencies_ms) / 1e3 <= run.wall_s * 1.01  # measured calls fit in the measured time


@requires_gstreamer
def test_end_to_end_stage_times_add_up(model: Path) -> None:
    run = bench_e2e(model, "onnxruntime", SOURCE, FRAMES, warmup=3)
    assert run.frames == FRAMES == len(run.frame_stages)
    for stages in run.frame_stages:
        parts = sum(stages[s] or 0.0 for s in ("preprocess", "infer", "postprocess", "track"))
        assert parts <= stages["total"] + 0.01
    assert run.latency_summary()["p50"] <= run.latency_summary()["p99"]
    assert run.fps == pytest.approx(FRAMES / run.wall_s, rel=0.1)


@requires_gstreamer
def test_cli_json_layout(model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = ["--model", str(model), "--frames", str(FRAMES), "--warmup", "2", "--source", SOURCE,
            "--json", str(out), "--plot", str(tmp_path / "bench.png")]  # fmt: skip
    assert bench_cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "versions", "runs"}
    assert [r["mode"] for r in report["runs"]] == ["model", "e2e"]
    for run in report["runs"]:
        assert run["frames"] == FRAMES and run["img"] == 160 and run["batch"] == 1
        assert set(run["latency_ms"]) == {"min", "p50", "p90", "p99", "max"}
        assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
        assert run["fps"] == pytest.approx(run["frames"] / run["wall_s"], rel=0.1)
        assert run["rss_mb"] > 0
    assert set(report["runs"][1]["stages_ms"]) == {
        "capture_age",
        "preprocess",
        "infer",
        "postprocess",
        "track",
        "total",
    }
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert "| model |" in capsys.readouterr().out


def test_missing_model_is_an_error(tmp_path: Path) -> None:
    assert bench_cli.main(["--model", str(tmp_path / "none.onnx")]) == 2
