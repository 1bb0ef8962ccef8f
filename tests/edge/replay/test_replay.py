"""edge-replay: determinism, regression diffs, drive validation and labelled metrics."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stopsign.edge.cli import replay as replay_cli
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.replay.drive import DriveError, DriveLabels, open_drive, read_frames
from stopsign.edge.replay.expected import Tolerance, compare, expected_for, to_lines
from stopsign.edge.replay.metrics import drive_metrics
from stopsign.edge.replay.pytest_plugin import check_drive
from stopsign.edge.replay.runner import FrameRecord, ReplayResult, replay
from stopsign.edge.sources.base import SourceOpenError
from stopsign.edge.sources.drive import load_drive
from stopsign.edge.vision.detections import Detections
from stopsign.export.onnx_export import export_onnx
from stopsign.train.checkpoint import spec_for_model
from stopsign.train.model import build_model

SIZE = 160


def make_drive(folder: Path, frames: int = 16, fps: float = 15.0) -> Path:
    """A red octagon approaching on grey, with exact labels."""
    folder.mkdir(parents=True)
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    lines, labels = [], []
    for i in range(frames):
        image = np.full((240, 320, 3), 90, np.uint8)
        r = 10 + 3 * i
        angles = np.deg2rad(22.5 + 45 * np.arange(8))
        points = np.stack([160 + r * np.cos(angles), 120 + r * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(image, [points], (30, 30, 200))
        writer.write(image)
        t = int(1e9 + i * 1e9 / fps)
        lines.append({"index": i, "pts_ns": t, "monotonic_ns": t})
        labels.append({"index": i, "boxes": [[160 - r, 120 - r, 160 + r, 120 + r]], "class_ids": [0]})
    writer.release()
    (folder / "frames.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    meta = {"camera": "test", "width": 320, "height": 240, "fps": fps, "recorder_version": "test"}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def confident_model(path: Path, weight_scale: float = 1.0) -> Path:
    """An untrained yolov5n whose head is biased to fire, so replays carry many boxes to compare."""
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    with torch.no_grad():
        for conv in model.detect.m:
            conv.bias.view(3, -1)[:, 4:6] += 6.0
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(weight_scale)
    spec = spec_for_model(model, ["stop_sign"], SIZE, operating_threshold=0.5)
    return export_onnx(model, spec, path)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return confident_model(tmp_path_factory.mktemp("m") / "model.onnx")


def test_replay_is_deterministic_and_round_trips(tmp_path: Path, model: Path) -> None:
    drive = make_drive(tmp_path / "drive")
    first, second = replay(drive, model), replay(drive, model)
    assert len(first.frames) == 16
    assert sum(len(f.detections) for f in first.frames) > 0
    assert to_lines(first) == to_lines(second)
    assert replay_cli.main([str(drive), "--model", str(model), "--update-expected"]) == 0
    assert replay_cli.main([str(drive), "--model", str(model)]) == 0


def test_perturbed_model_fails_with_a_readable_diff(tmp_path: Path, model: Path, capsys) -> None:
    drive = make_drive(tmp_path / "drive")
    assert replay_cli.main([str(drive), "--model", str(model), "--update-expected"]) == 0
    expected = next((drive / "expected").iterdir())
    perturbed = confident_model(tmp_path / "perturbed.onnx", weight_scale=1.05)
    capsys.readouterr()
    assert replay_cli.main([str(drive), "--model", str(perturbed), "--expected", str(expected)]) == 1
    out = capsys.readouterr().out
    assert "difference(s)" in out and "frame " in out


def test_report_writes_a_table_and_a_timeline_per_drive(tmp_path: Path, model: Path, capsys) -> None:
    drives = [make_drive(tmp_path / "a"), make_drive(tmp_path / "b", frames=8)]
    (drives[1] / "labels.jsonl").unlink()  # an unlabelled drive gets a row without metrics
    report = tmp_path / "report"
    assert replay_cli.main([*map(str, drives), "--model", str(model), "--report", str(report)]) == 0
    table = (report / "report.md").read_text().splitlines()
    assert table[0].startswith("| drive | frames | labelled | AP50 raw")
    assert table[2].startswith("| a | 16 | 16 | ") and table[3].startswith("| b | - |")
    for name in ("a", "b"):
        assert cv2.imread(str(report / f"{name}.png")) is not None
    assert '"delay_from_20px_ms"' in capsys.readouterr().out


def test_realtime_processes_or_skips_every_frame(tmp_path: Path, model: Path, capsys) -> None:
    drive = make_drive(tmp_path / "drive")
    assert replay_cli.main([str(drive), "--model", str(model), "--realtime"]) == 0
    out = capsys.readouterr().out
    processed, skipped = (
        int(n) for n in out.split("realtime, ")[1].split(" skipped")[0].split(" processed, ")
    )
    assert processed + skipped == 16 and processed >= 1


def test_plugin_check_skips_with_the_command_then_passes_then_fails(tmp_path: Path, model: Path) -> None:
    drive = make_drive(tmp_path / "drive", frames=8)
    with pytest.raises(pytest.skip.Exception, match=r"run: edge-replay .*drive --model .* --update-expected"):
        check_drive(drive, model, Tolerance())
    assert replay_cli.main([str(drive), "--model", str(model), "--update-expected"]) == 0
    check_drive(drive, model, Tolerance())
    expected = next((drive / "expected").iterdir())
    lines = expected.read_text().splitlines()
    frame = json.loads(lines[3])
    frame["detections"] = frame["detections"][1:]  # one box fewer than the model finds
    expected.write_text("\n".join([*lines[:3], json.dumps(frame), *lines[4:]]) + "\n")
    with pytest.raises(AssertionError, match="frame 2 detections: expected"):
        check_drive(drive, model, Tolerance())


SHA = "ab" * 32


@pytest.mark.parametrize(
    ("runtime", "precision", "files", "expected"),
    [
        # FP32 outputs hold across runtimes: one file per model, whatever ran it.
        ("openvino", "fp32", {}, f"{SHA[:16]}.jsonl"),
        ("openvino", "fp32", {f"{SHA[:16]}.openvino.jsonl": None}, f"{SHA[:16]}.jsonl"),
        # Reduced precision: the runtime's own file, present or to be made.
        ("openvino", "int8", {}, f"{SHA[:16]}.openvino.jsonl"),
        ("onnxruntime", "int8", {f"{SHA[:16]}.openvino.jsonl": "openvino"}, f"{SHA[:16]}.onnxruntime.jsonl"),
        ("tensorrt", "fp16", {f"{SHA[:16]}.jsonl": None, f"{SHA[:16]}.tensorrt.jsonl": "tensorrt"},
         f"{SHA[:16]}.tensorrt.jsonl"),
        # A file from before per-runtime names: used when its header names this runtime or none.
        ("openvino", "int8", {f"{SHA[:16]}.jsonl": None}, f"{SHA[:16]}.jsonl"),
        ("openvino", "int8", {f"{SHA[:16]}.jsonl": "openvino"}, f"{SHA[:16]}.jsonl"),
        ("openvino", "int8", {f"{SHA[:16]}.jsonl": "onnxruntime"}, f"{SHA[:16]}.openvino.jsonl"),
        # No runtime recorded (a result built by hand): the shared file.
        ("", "int8", {}, f"{SHA[:16]}.jsonl"),
    ],
)  # fmt: skip
def test_expected_outputs_are_per_runtime_only_for_reduced_precision(
    tmp_path: Path, runtime: str, precision: str, files: dict[str, str | None], expected: str
) -> None:
    (tmp_path / "expected").mkdir()
    for name, made_on in files.items():
        header = {"kind": "header", "version": 1, "model_sha256": SHA, "drive": "d", "frames": 0}
        if made_on is not None:
            header["runtime"] = made_on
        (tmp_path / "expected" / name).write_text(json.dumps(header) + "\n")
    spec = ModelSpec(input_size=(SIZE, SIZE), class_names=["stop_sign"])
    result = ReplayResult(tmp_path, SHA, spec, runtime=runtime, precision=precision)
    assert expected_for(result).name == expected


def test_int8_expected_outputs_are_written_per_runtime_and_missing_ones_name_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped Q/DQ file on ONNX Runtime: --update-expected writes <sha>.onnxruntime.jsonl with the
    runtime in its header; with only another runtime's file, the error names it."""
    int8 = Path(__file__).resolve().parents[3] / "edge" / "assets" / "stopsign.int8.onnx"
    drive = make_drive(tmp_path / "drive", frames=6)
    args = [str(drive), "--model", str(int8), "--backend", "onnxruntime"]
    assert replay_cli.main([*args, "--update-expected"]) == 0
    (written,) = (drive / "expected").iterdir()
    assert written.name.endswith(".onnxruntime.jsonl")
    header = json.loads(written.read_text().splitlines()[0])
    assert (header["runtime"], header["precision"]) == ("onnxruntime", "int8")
    assert replay_cli.main(args) == 0
    written.rename(written.with_name(written.name.replace("onnxruntime", "openvino")))
    capsys.readouterr()
    assert replay_cli.main(args) == 2
    err = capsys.readouterr().err
    assert ".onnxruntime.jsonl: no expected outputs" in err and ".openvino.jsonl" in err


def test_missing_expected_says_how_to_create_it(tmp_path: Path, model: Path, capsys) -> None:
    drive = make_drive(tmp_path / "drive")
    assert replay_cli.main([str(drive), "--model", str(model)]) == 2
    assert "--update-expected" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "meta.json").unlink(), "meta.json: missing"),
        (lambda d: (d / "frames.jsonl").write_text(
            '{"index":0,"pts_ns":5,"monotonic_ns":5}\n{"index":1,"pts_ns":3,"monotonic_ns":3}\n'), "frames.jsonl:2: times go backwards"),
        (lambda d: (d / "frames.jsonl").write_text("not json\n"), "frames.jsonl:1"),
    ],
)  # fmt: skip
def test_malformed_drives_name_file_and_line(tmp_path: Path, damage, message: str) -> None:
    drive = make_drive(tmp_path / "drive", frames=4)
    damage(drive)
    with pytest.raises(DriveError, match=message):
        open_drive(drive)


@pytest.mark.parametrize(
    ("tail", "finished", "frames"),
    [
        (b'{"index": 4, "pts', False, 4),  # torn by a power cut: dropped
        (b"\0" * 40, False, 4),  # length committed, data not: dropped
        (b'{"index": 4, "pts', True, None),  # a finished recording is never trimmed
    ],
)
def test_torn_index_tail(tmp_path: Path, tail: bytes, finished: bool, frames: int | None) -> None:
    drive = make_drive(tmp_path / "drive", frames=4)
    meta = json.loads((drive / "meta.json").read_text())
    (drive / "meta.json").write_text(json.dumps({**meta, "finished": finished}))
    with (drive / "frames.jsonl").open("ab") as handle:
        handle.write(tail)
    if frames is None:
        with pytest.raises(DriveError, match="frames.jsonl:5"):
            open_drive(drive)
        with pytest.raises(SourceOpenError, match="frames.jsonl:5"):
            load_drive(drive)  # the drive:// source reads the index the same way
    else:
        assert len(read_frames(open_drive(drive))) == frames
        assert len(load_drive(drive).timestamps) == frames


def test_video_shorter_than_its_index(tmp_path: Path) -> None:
    drive = make_drive(tmp_path / "drive", frames=4)
    with (drive / "frames.jsonl").open("a") as handle:
        handle.write(json.dumps({"index": 4, "pts_ns": 10**10, "monotonic_ns": 10**10}) + "\n")
    with pytest.raises(DriveError, match="frames.jsonl:5 has no video frame"):
        read_frames(open_drive(drive))


def test_tolerance_parsing() -> None:
    assert Tolerance.parse("iou=0.8,score=0.1") == Tolerance(0.8, 0.1)
    with pytest.raises(ValueError, match="expected iou=X"):
        Tolerance.parse("boxes=1")


def _result(frames: list[tuple[Detections, list[dict]]], events: list[dict]) -> ReplayResult:
    spec = ModelSpec(class_names=["stop_sign"], operating_threshold=0.5)
    result = ReplayResult(Path("d"), "0" * 64, spec, events=events)
    result.frames = [FrameRecord(i, i * 100_000_000, d, t) for i, (d, t) in enumerate(frames)]
    return result


def test_labelled_metrics() -> None:
    box = [10.0, 10.0, 50.0, 50.0]
    hit = Detections(np.array([box]), np.array([0.9]), np.array([0]))
    frames = [(Detections.empty(), []), (hit, []), (hit, []), (hit, [{"id": 1, "box": box, "score": 0.9}])]
    ahead = {"event": "stop_sign_ahead", "frame": 3, "track_id": 1, "box": box}
    false = {"event": "stop_sign_ahead", "frame": 3, "track_id": 2, "box": [200, 200, 240, 240]}
    labels = DriveLabels([np.array([box], np.float32)] * 4)
    metrics = drive_metrics(_result(frames, [ahead, false]), labels)
    assert metrics.first_label_frame == 0 and metrics.event_frame == 3
    assert metrics.delay_frames == 3 and metrics.delay_ms == 300.0
    assert metrics.first_raw_hit_frame == 1
    assert metrics.false_events == 1 and not metrics.missed
    assert metrics.ap50_raw == pytest.approx(0.75, abs=0.02)  # 3 of 4 labelled frames found, all precise
    diffs = compare(to_lines(_result(frames, [ahead])), to_lines(_result(frames, [false])), Tolerance())
    assert any("event 0" in d for d in diffs)
