"""Reviewed labels back into the canonical dataset layout, keeping the mining provenance.

``edge-data import --format cvat-coco REVIEWED --task TASK --out DIR`` reads CVAT's COCO 1.0
export (``instances_*.json`` or its zip); ``--format label-studio`` reads Label Studio's JSON
export (tasks with ``annotations``; the newest annotation that was not cancelled counts, a task
without one was not reviewed and is skipped). Frames are matched to the task's ``mined.jsonl``
by image file name, so the provenance (source, frame, stamp, reasons) survives the tools, which
keep only file names. A reviewed frame without boxes is a negative, or a confuser when it was
mined around a false event. Each image's ``sources.jsonl`` line carries the provenance as JSON in
``original``. Every image trains (``train.txt``): validation stays the real split.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.layout import CLASS_NAMES, DatasetError, SourceRecord
from stopsign.train.data.mine.pipeline import MINED, read_jsonl
from stopsign.train.data.mine.records import Candidate

REVIEW_FORMATS = ("cvat-coco", "label-studio")


@dataclass
class Reviewed:
    """Reviewed boxes (xyxy pixels) per image file name, and what was skipped and why."""

    boxes: dict[str, list[list[float]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _coco_json(path: Path) -> dict:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.startswith("annotations/") and n.endswith(".json")]
            if not names:
                raise DatasetError(f"{path}: no annotations/instances_*.json inside (not a COCO 1.0 export)")
            return json.loads(archive.read(sorted(names)[0]))
    return json.loads(path.read_text())


def read_cvat_coco(path: Path) -> Reviewed:
    """Boxes of the ``stop_sign`` category per image file name from a COCO 1.0 export."""
    try:
        doc = _coco_json(path)
        stop_ids = {c["id"] for c in doc["categories"] if c["name"] == CLASS_NAMES[0]}
        names = {img["id"]: Path(img["file_name"]).name for img in doc["images"]}
        out = Reviewed({name: [] for name in names.values()})
        for ann in doc.get("annotations", []):
            if ann["category_id"] in stop_ids:
                x, y, w, h = (float(v) for v in ann["bbox"])
                out.boxes[names[ann["image_id"]]].append([x, y, x + w, y + h])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a COCO instances file ({type(exc).__name__}: {exc})") from None
    return out


def read_label_studio(path: Path) -> Reviewed:
    """Boxes per image file name from a Label Studio JSON export (percent -> pixels)."""
    try:
        tasks = json.loads(path.read_text())
        if not isinstance(tasks, list):
            raise DatasetError(f"{path}: a Label Studio export is a JSON list of tasks")
        out = Reviewed()
        for task in tasks:
            name = Path(str(task["data"]["image"]).split("?d=")[-1]).name
            done = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            if not done:
                out.skipped.append(f"{name}: not reviewed")
                continue
            boxes = []
            for result in done[-1]["result"]:
                value = result["value"]
                if result.get("type") != "rectanglelabels" or CLASS_NAMES[0] not in value.get(
                    "rectanglelabels", []
                ):
                    continue
                w, h = float(result["original_width"]), float(result["original_height"])
                x1, y1 = value["x"] * w / 100, value["y"] * h / 100
                boxes.append([x1, y1, x1 + value["width"] * w / 100, y1 + value["height"] * h / 100])
            out.boxes[name] = boxes
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(f"{path}: not a Label Studio JSON export ({type(exc).__name__}: {exc})") from None
    return out


def import_reviewed(
    fmt: str, reviewed_path: Path, task: Path, out: Path, name: str = "mined"
) -> dict[str, int]:
    """Write the reviewed frames to the canonical dataset ``out``; returns counts per role."""
    if fmt not in REVIEW_FORMATS:
        raise DatasetError(f"unknown review format {fmt!r}; use one of {', '.join(REVIEW_FORMATS)}")
    reviewed = read_cvat_coco(reviewed_path) if fmt == "cvat-coco" else read_label_studio(reviewed_path)
    mined = {Path(c.image).name: c for c in (Candidate.from_dict(d) for d in read_jsonl(task / MINED))}
    unknown = sorted(set(reviewed.boxes) - set(mined))
    if unknown:
        raise DatasetError(f"{reviewed_path}: images {unknown[:5]} are not in {task / MINED}")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not empty; import into a new folder")
    (out / layout.IMAGES).mkdir(parents=True)
    (out / layout.LABELS).mkdir()
    records, entries, counts = [], [], {"stop": 0, "confuser": 0, "negative": 0, "boxes": 0}
    for file_name, boxes in sorted(reviewed.boxes.items()):
        candidate = mined[file_name]
        image_name = f"{layout.safe_name(name)}_{file_name}"
        shutil.copy2(task / candidate.image, out / layout.IMAGES / image_name)
        yolo = layout.xyxy_to_yolo(
            np.asarray(boxes, np.float64).reshape(-1, 4), candidate.width, candidate.height
        )
        label = (out / layout.LABELS / image_name).with_suffix(".txt")
        label.write_text(layout.format_label_lines(yolo))
        role = "stop" if boxes else ("confuser" if "false_event" in candidate.reason_names else "negative")
        counts[role] += 1
        counts["boxes"] += len(boxes)
        origin = {
            "source": candidate.source,
            "frame": candidate.index,
            "stamp_ns": candidate.stamp_ns,
            "reasons": candidate.reasons,
            "review": fmt,
        }
        records.append(
            SourceRecord(
                image_name, name, json.dumps(origin, sort_keys=True), "own recording", role, n_stop=len(boxes)
            )
        )
        entries.append(f"{layout.IMAGES}/{image_name}")
    layout.write_sources(out, records)
    layout.write_list(out, layout.TRAIN_LIST, entries)
    layout.write_list(out, layout.VAL_LIST, [])
    layout.write_data_yaml(out)
    counts["skipped"] = len(reviewed.skipped)
    return counts
