"""Export to CVAT COCO 1.0 and Label Studio, review (as the tools write their exports), import back."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.train.data import layout
from stopsign.train.data.cli import main as edge_data
from stopsign.train.data.mine.export import (
    COCO_JSON,
    COCO_ZIP,
    LS_CONFIG,
    LS_TASKS,
    write_cvat_coco,
    write_label_studio,
)
from stopsign.train.data.mine.pipeline import MINED
from stopsign.train.data.mine.records import Candidate, Proposal
from stopsign.train.data.mine.roundtrip import import_reviewed

W, H = 640, 360


def _task(tmp_path: Path) -> tuple[Path, list[Candidate]]:
    task = tmp_path / "task"
    (task / "images").mkdir(parents=True)
    chosen = [
        Candidate(
            "drive://d1",
            "d1-abc123",
            7,
            7_000_000,
            W,
            H,
            ["backfill: track 1 (backfill)"],
            3.0,
            [Proposal([100.0, 50.0, 112.5, 63.0], 0.8, "backfill", 1)],
            11,
        ),
        Candidate(
            "clip.mp4",
            "clip-def456",
            42,
            2_800_000_000,
            W,
            H,
            ["uncertain: best 0.45", "flicker"],
            2.2,
            [
                Proposal([300.0, 100.0, 340.0, 141.0], 0.45, "detector"),
                Proposal([10.0, 10.0, 30.0, 30.0], 0.41, "detector"),
            ],
            22,
        ),
        Candidate(
            "drive://d1",
            "d1-abc123",
            30,
            30_000_000,
            W,
            H,
            ["false_event: track 4 matches no label"],
            2.0,
            [],
            33,
        ),
    ]
    for c in chosen:
        c.image = f"images/{c.drive}_{c.index:06d}.jpg"
        cv2.imwrite(str(task / c.image), np.full((H, W, 3), c.index, np.uint8))
    (task / MINED).write_text("".join(c.to_json() + "\n" for c in chosen))
    write_cvat_coco(chosen, task)
    write_label_studio(chosen, task, "test-model")
    return task, chosen


def test_coco_export_follows_the_coco_schema(tmp_path):
    task, chosen = _task(tmp_path)
    doc = json.loads((task / COCO_JSON).read_text())
    assert set(doc) >= {"images", "annotations", "categories", "licenses", "info"}
    assert doc["categories"] == [{"id": 1, "name": "stop_sign", "supercategory": ""}]
    assert [img["file_name"] for img in doc["images"]] == [Path(c.image).name for c in chosen]
    first = doc["annotations"][0]
    assert first["bbox"] == [100.0, 50.0, 12.5, 13.0]  # x, y, width, height from the top-left
    assert first["area"] == pytest.approx(12.5 * 13.0) and first["iscrowd"] == 0
    assert first["attributes"]["occluded"] is False
    with zipfile.ZipFile(task / COCO_ZIP) as archive:
        names = set(archive.namelist())
    assert "annotations/instances_default.json" in names
    assert {f"images/default/{Path(c.image).name}" for c in chosen} <= names


def test_label_studio_export_follows_the_task_format(tmp_path):
    task, _chosen = _task(tmp_path)
    tasks = json.loads((task / LS_TASKS).read_text())
    config = (task / LS_CONFIG).read_text()
    assert len(tasks) == 3 and 'name="label"' in config and 'name="image"' in config
    result = tasks[0]["predictions"][0]["result"][0]
    assert (
        result["type"] == "rectanglelabels"
        and result["from_name"] == "label"
        and result["to_name"] == "image"
    )
    assert (result["original_width"], result["original_height"]) == (W, H)
    assert result["value"]["x"] == pytest.approx(100 * 100 / W)
    assert result["value"]["height"] == pytest.approx(100 * 13 / H)
    assert result["value"]["rectanglelabels"] == ["stop_sign"]
    assert tasks[0]["data"]["frame"] == 7 and tasks[0]["data"]["source"] == "drive://d1"
    assert tasks[2]["predictions"][0]["result"] == []


def _label_boxes(out: Path, image: str) -> np.ndarray:
    text = (out / "labels" / (Path(image).stem + ".txt")).read_text().split()
    yolo = np.asarray(text, np.float64).reshape(-1, 5)[:, 1:]
    return layout.yolo_to_xyxy(yolo, W, H)


def test_cvat_round_trip(tmp_path):
    task, chosen = _task(tmp_path)
    doc = json.loads((task / COCO_JSON).read_text())
    # The reviewer moves the backfilled box, deletes the small false box; CVAT writes its own attributes.
    doc["annotations"][0]["bbox"] = [101.0, 51.0, 12.0, 12.0]
    doc["annotations"] = [a for a in doc["annotations"] if a["bbox"][0] != 10.0]
    for ann in doc["annotations"]:
        ann["attributes"] = {"occluded": False, "rotation": 0.0}
    reviewed = tmp_path / "cvat_export.zip"
    with zipfile.ZipFile(reviewed, "w") as archive:
        archive.writestr("annotations/instances_default.json", json.dumps(doc))
    out = tmp_path / "ds"
    counts = import_reviewed("cvat-coco", reviewed, task, out)
    assert counts == {"stop": 2, "confuser": 1, "negative": 0, "boxes": 2, "skipped": 0}
    sources = layout.read_sources(out)
    first = sources[f"mined_{Path(chosen[0].image).name}"]
    assert first.role == "stop" and first.n_stop == 1
    origin = json.loads(first.original)
    assert origin == {
        "source": "drive://d1",
        "frame": 7,
        "stamp_ns": 7_000_000,
        "reasons": ["backfill: track 1 (backfill)"],
        "review": "cvat-coco",
    }
    assert _label_boxes(out, first.image) == pytest.approx(np.array([[101, 51, 113, 63]]), abs=1e-3)
    assert sources[f"mined_{Path(chosen[2].image).name}"].role == "confuser"  # around a false event
    assert len(layout.read_list(out, "train.txt")) == 3 and layout.read_list(out, "val.txt") == []


def test_label_studio_round_trip(tmp_path):
    task, chosen = _task(tmp_path)
    tasks = json.loads((task / LS_TASKS).read_text())
    # Label Studio's export: the reviewer accepted task 0's prediction, added a box to task 2,
    # cancelled an earlier try on task 2, and never opened task 1.
    tasks[0]["annotations"] = [{"result": tasks[0]["predictions"][0]["result"], "was_cancelled": False}]
    added = {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {
            "x": 50.0,
            "y": 25.0,
            "width": 10.0,
            "height": 20.0,
            "rotation": 0,
            "rectanglelabels": ["stop_sign"],
        },
    }
    tasks[2]["annotations"] = [
        {"result": [], "was_cancelled": True},
        {"result": [added], "was_cancelled": False},
    ]
    reviewed = tmp_path / "ls_export.json"
    reviewed.write_text(json.dumps(tasks))
    out = tmp_path / "ds"
    counts = import_reviewed("label-studio", reviewed, task, out)
    assert counts == {"stop": 2, "confuser": 0, "negative": 0, "boxes": 2, "skipped": 1}
    first = f"mined_{Path(chosen[0].image).name}"
    assert _label_boxes(out, first) == pytest.approx(np.array([chosen[0].proposals[0].xyxy]), abs=1e-3)
    third = f"mined_{Path(chosen[2].image).name}"
    assert _label_boxes(out, third) == pytest.approx(np.array([[320, 90, 384, 162]]), abs=1e-3)


@pytest.mark.parametrize(
    ("make_review", "message"),
    [
        (
            lambda p: p.write_text(
                '[{"data": {"image": "/x/unknown.jpg"}, "annotations": [{"result": []}]}]'
            ),
            "not in",
        ),
        (lambda p: p.write_text('{"not": "a list"}'), "JSON list of tasks"),
        (lambda p: p.write_text('[{"no_data": 1}]'), "not a Label Studio JSON export"),
    ],
)
def test_bad_reviews_are_clear_errors(tmp_path, capsys, make_review, message):
    task, _ = _task(tmp_path)
    reviewed = tmp_path / "review.json"
    make_review(reviewed)
    code = edge_data(
        [
            "import",
            "--format",
            "label-studio",
            str(reviewed),
            "--task",
            str(task),
            "--out",
            str(tmp_path / "ds"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_import_needs_the_task_folder(tmp_path, capsys):
    assert (
        edge_data(["import", "--format", "cvat-coco", str(tmp_path / "x.zip"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "--task" in capsys.readouterr().err
