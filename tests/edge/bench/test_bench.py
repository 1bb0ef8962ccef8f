"""edge-bench: the JSON layout, and numbers consistent with what happened (never a speed threshold)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

from stopsign.edge.cli import bench as bench_cli
from stopsign.edge.cli.benchmark import FixedBatchError, bench_e2e, bench_model, model_file_spec, paced_source
from stopsign.edge.model.spec import ModelSpecError
from stopsign.export.onnx_export import export_onnx
from stopsign.train.checkpoint import spec_for_model
from stopsign.train.model import build_model
from tests.edge.helpers import requires_gstreamer

FRAMES = 20
SOURCE = "test://?pattern=snow&size=320x240&live=0"
LIVE_SOURCE = "test://?pattern=snow&size=320x240&fps=60"
STAGES = {"capture_age", "preprocess", "infer", "postprocess", "track", "total"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = build_model("yolov5n", 1).eval()
    return export_onnx(net, spec_for_model(net, ["stop_sign"], 160), tmp_path_factory.mktemp("m") / "m.onnx")


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = build_model("yolov5n", 1).eval()
    out = tmp_path_factory.mktemp("d") / "d.onnx"
    return export_onnx(net, spec_for_model(net, ["stop_sign"], 160), out, dynamic=True)


def test_model_only_numbers_are_consistent(model: Path) -> None:
    started = time.perf_counter()
    run = bench_model(model, "onnxruntime", FRAMES, warmup=3)
    outside = time.perf_counter() - started
    assert run.frames == FRAMES == len(run.latencies_ms)
    lat = run.latency_summary()
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    # The measured calls are the whole measured window: fps agrees with the calls' own durations.
    assert run.fps == pytest.approx(FRAMES / (sum(run.latencies_ms) / 1e3), rel=0.1)
    assert sum(run.latencies_ms) / 1e3 <= run.wall_s <= outside  # warm-up and loading excluded
    assert run.cpu_s is not None and run.cpu_s > 0
    assert run.rss_mb > 0
    assert run.to_dict()["model_input"] == "float32"  # ONNX Runtime takes the float network input


@pytest.mark.parametrize("batch", [2, 4])
def test_batch_throughput_counts_images(dynamic_model: Path, batch: int) -> None:
    started = time.perf_counter()
    run = bench_model(dynamic_model, "onnxruntime", 4, warmup=1, batch=batch)
    outside = time.perf_counter() - started
    assert run.batch == batch and run.frames == 4
    # Images per second, not calls: bounded by the calls' own durations and by the whole call.
    assert 4 * batch / outside <= run.fps <= 4 * batch / (sum(run.latencies_ms) / 1e3)


def test_fixed_batch_model_refuses_other_batches(model: Path) -> None:
    with pytest.raises(FixedBatchError, match="dynamic batch"):
        bench_model(model, "onnxruntime", 2, warmup=1, batch=2)


def test_duration_bounds_the_model_only_run(model: Path) -> None:
    run = bench_model(model, "onnxruntime", FRAMES, warmup=1, duration_s=0.3)
    assert run.frames == len(run.latencies_ms) >= 2
    assert 0.3 <= run.wall_s <= 0.3 + max(run.latencies_ms) / 1e3 + 0.05


def _check_stages_add_up(frame_stages: list[dict[str, float | None]]) -> None:
    for stages in frame_stages:
        parts = sum(stages[s] or 0.0 for s in ("preprocess", "infer", "postprocess", "track"))
        assert parts <= stages["total"] + 0.01  # rounded to 3 decimals in the frame log


@requires_gstreamer
def test_end_to_end_stage_times_add_up(model: Path) -> None:
    started = time.perf_counter()
    run = bench_e2e(model, "onnxruntime", SOURCE, FRAMES, warmup=3)
    outside = time.perf_counter() - started
    assert run.frames == FRAMES == len(run.frame_stages) == len(run.latencies_ms)
    _check_stages_add_up(run.frame_stages)
    lat = run.latency_summary()
    assert lat["p50"] <= lat["p99"]
    assert run.live is False and all(s["capture_age"] is None for s in run.frame_stages)
    # Frames are processed one after another: their totals fit in the measured window (give or
    # take the frame that straddles its start), and the window lies inside the call.
    totals = [s["total"] or 0.0 for s in run.frame_stages]
    assert sum(totals) / 1e3 <= run.wall_s + max(totals) / 1e3 <= outside
    assert run.fps == pytest.approx(FRAMES / run.wall_s, rel=0.1)
    assert run.cpu_s is not None and run.cpu_s > 0


@requires_gstreamer
def test_live_latency_counts_capture_age(model: Path) -> None:
    run = bench_e2e(model, "onnxruntime", LIVE_SOURCE, FRAMES, warmup=3)
    assert run.live is True and run.frames == FRAMES
    _check_stages_add_up(run.frame_stages)
    for stages, latency in zip(run.frame_stages, run.latencies_ms):
        assert stages["capture_age"] is not None and stages["capture_age"] >= 0
        assert latency == pytest.approx(stages["capture_age"] + (stages["total"] or 0.0))


@requires_gstreamer
def test_cli_json_layout(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    argv = ["--model", str(model), "--backend", "onnxruntime", "--frames", str(FRAMES), "--warmup", "2",
            "--source", SOURCE, "--json", str(out), "--plot", str(tmp_path / "bench.png")]  # fmt: skip
    assert bench_cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "versions", "runs"}
    assert report["machine"]["cpu_count"] >= 1 and "onnxruntime" in report["versions"]
    assert [r["mode"] for r in report["runs"]] == ["model", "e2e"]
    for run in report["runs"]:
        assert {
            "mode",
            "backend",
            "precision",
            "img",
            "batch",
            "frames",
            "fps",
            "latency_ms",
            "rss_mb",
        } <= set(run)
        assert run["backend"] == "onnxruntime" and run["precision"] == "fp32"
        assert run["frames"] == FRAMES and run["img"] == 160 and run["batch"] == 1
        assert set(run["latency_ms"]) == {"min", "p50", "p90", "p99", "max"}
        assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
        assert run["fps"] == pytest.approx(run["frames"] / run["wall_s"], rel=0.1)
        assert run["rss_mb"] > 0
    assert "stages_ms" not in report["runs"][0]
    stages = report["runs"][1]["stages_ms"]
    assert set(stages) == STAGES and stages["capture_age"] is None  # ordered source: no capture age
    assert stages["infer"] <= stages["total"]
    assert (tmp_path / "bench.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "| model | onnxruntime | fp32 | 160 |" in table and "| e2e | onnxruntime | fp32 | 160 |" in table
    assert all(
        line.endswith(f"| {model.name} |") for line in table.splitlines() if line.startswith("| model |")
    )


def test_cli_skips_batches_a_fixed_model_cannot_take(model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "b.json"
    argv = ["--model", str(model), "--mode", "model", "--batch", "1", "2", "--frames", "3", "--warmup", "1",
            "--json", str(out)]  # fmt: skip
    assert bench_cli.main(argv) == 0
    assert [r["batch"] for r in json.loads(out.read_text())["runs"]] == [1]
    assert "skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--img", "160"], 0, ""),
        (["--img", "416"], 1, "--img 416: no given model"),
        (["--precision", "int8"], 1, "--precision int8: no given model"),
    ],
)
def test_img_and_precision_select_among_model_files(
    model: Path, tmp_path: Path, capsys, flags: list[str], code: int, message: str
) -> None:
    argv = ["--model", str(model), "--mode", "model", "--frames", "2", "--warmup", "0", *flags]
    assert bench_cli.main(argv) == code
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--frames", "1"], ["--warmup", "-1"], ["--batch", "0"], ["--duration", "0"]],
)
def test_bad_arguments_are_errors(model: Path, argv: list[str]) -> None:
    assert bench_cli.main(["--model", str(model), *argv]) == 2


def test_missing_model_is_an_error(tmp_path: Path) -> None:
    assert bench_cli.main(["--model", str(tmp_path / "none.onnx")]) == 2


@requires_gstreamer
def test_duration_bounds_the_end_to_end_run(model: Path) -> None:
    started = time.perf_counter()
    run = bench_e2e(model, "onnxruntime", SOURCE, FRAMES, warmup=2, duration_s=0.3)
    outside = time.perf_counter() - started
    assert run.frames == len(run.frame_stages) >= 2
    # Stopped on the first frame after 0.3 s of measured frames (capture times lead by a frame).
    slowest = max(s["total"] or 0.0 for s in run.frame_stages) / 1e3
    assert 0.3 - 2 * slowest <= run.wall_s <= outside
    _check_stages_add_up(run.frame_stages)


def test_model_file_spec_reads_onnx_and_checkpoint_folders(model: Path, tmp_path: Path) -> None:
    assert model_file_spec(model) == (160, "fp32")
    net = build_model("yolov5n", 1)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "spec.json").write_text(spec_for_model(net, ["stop_sign"], 224).to_json())
    assert model_file_spec(folder) == (224, "fp32")
    with pytest.raises(ModelSpecError, match="no spec.json"):
        model_file_spec(tmp_path)


GST_STILL = "gst://videotestsrc pattern=snow num-buffers=1 ! video/x-raw,format=BGR,width=320,height=240 ! imagefreeze"


@pytest.mark.parametrize(
    ("source", "rate", "expected"),
    [
        (GST_STILL, None, GST_STILL),
        (GST_STILL, 0, GST_STILL),
        (GST_STILL, 30, GST_STILL + " ! video/x-raw,framerate=30/1 ! clocksync"),
        (GST_STILL, 29.97, GST_STILL + " ! video/x-raw,framerate=2997/100 ! clocksync"),
        ("gst://filesrc location=a.mkv ! decodebin", 15, "gst://filesrc location=a.mkv ! decodebin ! videorate ! video/x-raw,framerate=15/1 ! clocksync"),
        ("test://?pattern=snow", 0, "test://?pattern=snow"),
    ],
)  # fmt: skip
def test_paced_source_adds_the_rate_and_a_clock(source: str, rate: float | None, expected: str) -> None:
    assert paced_source(source, rate) == expected


@pytest.mark.parametrize(
    ("source", "rate"), [("test://?pattern=snow", 30), ("/dev/video0", 30), (GST_STILL, -1)]
)
def test_a_source_that_cannot_be_paced_is_an_error(source: str, rate: float) -> None:
    with pytest.raises(ValueError, match="--rate"):
        paced_source(source, rate)


@pytest.mark.parametrize(
    ("source", "rates", "expected"),
    [(GST_STILL, None, [30.0, 0.0]), (GST_STILL, [60.0], [60.0]), ("test://?pattern=snow", None, [None])],
)
def test_gst_sources_run_paced_and_back_to_back_by_default(source, rates, expected) -> None:
    assert bench_cli.e2e_rates(source, rates) == expected


@requires_gstreamer
def test_a_paced_run_takes_frames_at_the_cameras_rate(model: Path) -> None:
    paced = bench_e2e(model, "onnxruntime", GST_STILL, 15, warmup=2, rate=30)
    back_to_back = bench_e2e(model, "onnxruntime", GST_STILL, 15, warmup=2, rate=0)
    # Paced, the source sets the pace: never faster than 30 fps; and when a frame takes well under
    # its 33 ms slot, close to 30. Back to back, only the work sets it: faster than the camera.
    # 15 frames span 14 intervals of the camera (plus one frame's work), so a perfectly paced run
    # reads up to 30 * 15 / 14 = 32.1 fps; 1 % above that is the source's clock jitter.
    assert paced.fps <= 30 * 15 / 14 * 1.01
    work_ms = statistics.median(s["total"] for s in back_to_back.frame_stages)
    if work_ms < 10:  # not a speed threshold: the comparison only means something when there is slack
        assert paced.fps >= 24
        assert back_to_back.fps > paced.fps
    assert paced.to_dict()["rate_fps"] == 30 and back_to_back.to_dict()["rate_fps"] == 0
    assert paced.source == GST_STILL  # the JSON names the source as given, the pace beside it


@requires_gstreamer
def test_cli_runs_a_gst_source_paced_then_back_to_back(model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "paced.json"
    argv = ["--model", str(model), "--backend", "onnxruntime", "--mode", "e2e", "--frames", "6", "--warmup", "2",
            "--source", GST_STILL, "--json", str(out)]  # fmt: skip
    assert bench_cli.main(argv) == 0
    assert [r["rate_fps"] for r in json.loads(out.read_text())["runs"]] == [30.0, 0.0]
    table = capsys.readouterr().out
    assert "| 30 fps |" in table and "| back to back |" in table


def test_cli_refuses_a_rate_for_a_source_it_cannot_pace(model: Path, capsys) -> None:
    assert bench_cli.main(["--model", str(model), "--source", "/dev/video0", "--rate", "30"]) == 2
    assert "--rate paces gst:// sources only" in capsys.readouterr().err
