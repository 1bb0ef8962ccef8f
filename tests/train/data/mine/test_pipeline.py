"""``edge-data mine`` end to end on small made-up drives with the shipped model: a sharded run
merged equals a single run, and the task folder holds what the labelling tools need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.train.data.cli import main as edge_data
from stopsign.train.data.layout import DatasetError
from stopsign.train.data.mine.pipeline import parse_shard, shard_sources
from tests.train.data.mine.helpers import made_up_drives

SHIPPED = Path(__file__).resolve().parents[4] / "edge" / "assets" / "stopsign.onnx"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is not in this checkout")


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> list[Path]:
    return made_up_drives(tmp_path_factory.mktemp("drives"))


def _mined(task: Path) -> list[dict]:
    return [json.loads(line) for line in (task / "mined.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 15 s of CPU: three scans twice
def test_shards_merged_equal_a_single_run(drives, tmp_path):
    sources = [str(d) for d in drives]
    common = ["--budget", "10", "--threads", "1", "--no-progress"]
    assert edge_data(["mine", *sources, "--out", str(tmp_path / "single"), *common]) == 0
    for i in range(2):
        assert (
            edge_data(["mine", *sources, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}"), *common]) == 0
        )
    shards = [str(tmp_path / "s0"), str(tmp_path / "s1")]
    assert (
        edge_data(
            ["mine-merge", *shards, "--out", str(tmp_path / "merged"), "--budget", "10", "--no-progress"]
        )
        == 0
    )
    single, merged = _mined(tmp_path / "single"), _mined(tmp_path / "merged")
    assert single == merged
    assert 0 < len(single) <= 10
    for record in single:
        assert record["reasons"] and record["source"] in sources
        assert (tmp_path / "single" / record["image"]).is_file()
    task = tmp_path / "single"
    for name in ("summary.md", "contact_sheet.png", "cvat_coco_1.0.zip", "label_studio/tasks.json"):
        assert (task / name).is_file(), name
    coco = json.loads((task / "cvat/annotations/instances_default.json").read_text())
    assert len(coco["images"]) == len(single)
    assert "| reason | candidates | chosen |" in (task / "summary.md").read_text()


def test_the_sign_is_backfilled_or_found(drives, tmp_path):
    """The composited sign is proposed on most chosen frames (backfill or the detector with tiles)."""
    assert (
        edge_data(
            [
                "mine",
                str(drives[0]),
                "--out",
                str(tmp_path / "t"),
                "--budget",
                "20",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    labels = {
        json.loads(x)["index"]: json.loads(x)["boxes"]
        for x in (drives[0] / "labels.jsonl").read_text().splitlines()
    }
    mined = _mined(tmp_path / "t")
    assert mined
    proposed = [r for r in mined if r["proposals"]]
    assert len(proposed) >= len(mined) // 2
    for record in proposed:
        assert labels[record["index"]], "a proposal on a frame without the sign"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0/1", True),
        ("3/4", True),
        ("4/4", False),
        ("-1/2", False),
        ("a/b", False),
        ("2", False),
        ("0/0", False),
    ],
)
def test_parse_shard(text, ok):
    if ok:
        assert parse_shard(text) == tuple(int(v) for v in text.split("/"))
    else:
        with pytest.raises(DatasetError, match="--shard"):
            parse_shard(text)


def test_shards_partition_the_sources():
    sources = [f"d{i}" for i in range(7)] + ["d3"]
    parts = [shard_sources(sources, i, 3) for i in range(3)]
    assert sorted(s for part in parts for s in part) == sorted(set(sources))


def test_bad_sources_are_clear_errors(tmp_path, capsys):
    assert edge_data(["mine", str(tmp_path / "nope"), "--out", str(tmp_path / "t")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert edge_data(["mine", str(tmp_path), "--out", str(tmp_path / "t"), "--shard", "5/2"]) == 2
    assert "--shard" in capsys.readouterr().err


def test_any_edge_detect_source_mines(drives, tmp_path):
    """A drive folder, a bare video file and an image folder in one run."""
    import cv2

    stills = tmp_path / "stills"
    stills.mkdir()
    capture = cv2.VideoCapture(str(drives[2] / "video.mp4"))
    for i in range(3):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(stills / f"still_{i}.jpg"), image)
    capture.release()
    sources = [f"drive://{drives[0]}", str(drives[1] / "video.mp4"), str(stills)]
    shard = tmp_path / "shard"
    assert (
        edge_data(
            ["mine", *sources, "--shard", "0/1", "--out", str(shard), "--threads", "1", "--no-progress"]
        )
        == 0
    )
    lines = [json.loads(x) for x in (shard / "drives.jsonl").read_text().splitlines()]
    assert {line["source"]: line["frames"] for line in lines} == {
        sources[0]: 11,
        sources[1]: 11,
        sources[2]: 3,
    }


def test_fp32_against_int8(drives):
    """--compare-model: the INT8 (Q/DQ) model runs on the same batches; its boxes sit beside FP32's.
    (ONNX Runtime runs it here: OpenVINO stays out of the main test process, tests/conftest.py.)"""
    from stopsign.edge.replay.runner import load_backend
    from stopsign.edge.vision.tiles import TileConfig
    from stopsign.train.data.mine.scan import ModelRun, scan_source
    from stopsign.train.data.mine.signals import SignalConfig, disagreement

    int8 = SHIPPED.with_name("stopsign.int8.onnx")
    main, second = (
        ModelRun(*load_backend(path, backend, 1))
        for path, backend in ((SHIPPED, "onnxruntime"), (int8, "onnxruntime"))
    )
    scan = scan_source(str(drives[0]), main, TileConfig.parse("auto"), second, progress=False)
    assert all(f.second is not None for f in scan.frames)
    confident = [f for f in scan.frames if any(r[4] >= 0.5 for r in f.merged)]
    agreeing = [f for f in confident if any(r[4] >= 0.3 for r in f.second)]
    assert len(agreeing) >= len(confident) - 2  # INT8 sees nearly what FP32 sees
    hits = disagreement(scan.frames, SignalConfig())
    assert all(
        r.split(":")[0] in ("disagree_tiles", "disagree_models") for h in hits.values() for r in h.reasons
    )
