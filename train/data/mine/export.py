"""The labelling task in the tools' own import formats, proposals as pre-annotations.

**CVAT, COCO 1.0** (checked against CVAT's format documentation, docs.cvat.ai "COCO" and
"Import annotations and data to CVAT": a zip with ``annotations/instances_<subset>.json``,
images under ``images/<subset>/`` when they travel with it; "default" is a task's subset; boxes are
``bbox = [x, y, width, height]`` in pixels from the top-left corner, CVAT adds
``attributes.occluded`` / ``rotation``, and images are matched by ``file_name``)::

    TASK/cvat/annotations/instances_default.json
    TASK/cvat/images/default/<drive>_<frame>.jpg
    TASK/cvat_coco_1.0.zip      the two above, for "Import dataset" / "Upload annotations" (COCO 1.0)

**Label Studio** (checked against labelstud.io "Import pre-annotated data" and "Label Studio
task format": a JSON list of tasks, each ``data`` + ``predictions[{model_version, score,
result}]``; a ``rectanglelabels`` result has ``from_name``/``to_name`` naming the labelling
config's tags, ``original_width``/``original_height`` and ``value`` x, y, width, height in
percent of the image, ``rotation`` and ``rectanglelabels``)::

    TASK/label_studio/tasks.json          the tasks, with the mining provenance in ``data``
    TASK/label_studio/label_config.xml    the matching labelling interface
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.train.data.layout import CLASS_NAMES
from stopsign.train.data.mine.records import Candidate

COCO_JSON = "cvat/annotations/instances_default.json"
COCO_IMAGES = "cvat/images/default"
COCO_ZIP = "cvat_coco_1.0.zip"
LS_TASKS = "label_studio/tasks.json"
LS_CONFIG = "label_studio/label_config.xml"
LS_FROM, LS_TO = "label", "image"  # the tag names of LABEL_CONFIG
LABEL_CONFIG = f"""<View>
  <Image name="{LS_TO}" value="$image"/>
  <RectangleLabels name="{LS_FROM}" toName="{LS_TO}">
    <Label value="{CLASS_NAMES[0]}" background="red"/>
  </RectangleLabels>
</View>
"""


def provenance(candidate: Candidate) -> dict:
    """Where a frame came from and why it was mined (kept through review and import)."""
    return {
        "source": candidate.source,
        "drive": candidate.drive,
        "frame": candidate.index,
        "stamp_ns": candidate.stamp_ns,
        "reasons": candidate.reasons,
    }


def coco_document(chosen: list[Candidate]) -> dict:
    """COCO instances JSON with the proposals as annotations (category 1 = stop_sign)."""
    images, annotations = [], []
    for image_id, candidate in enumerate(chosen, start=1):
        images.append(
            {
                "id": image_id,
                "width": candidate.width,
                "height": candidate.height,
                "file_name": Path(candidate.image).name,
                "license": 0,
                "flickr_url": "",
                "coco_url": "",
                "date_captured": 0,
            }
        )
        for proposal in candidate.proposals:
            x1, y1, x2, y2 = proposal.xyxy
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": [],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                    "iscrowd": 0,
                    "attributes": {
                        "occluded": False,
                        "rotation": 0.0,
                        "score": proposal.score,
                        "origin": proposal.origin,
                    },
                }
            )
    return {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {
            "contributor": "",
            "date_created": "",
            "description": "edge-data mine",
            "url": "",
            "version": "",
            "year": "",
        },
        "categories": [{"id": 1, "name": CLASS_NAMES[0], "supercategory": ""}],
        "images": images,
        "annotations": annotations,
    }


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links: a copy does as well
        shutil.copy2(src, dst)


def write_cvat_coco(chosen: list[Candidate], task: Path) -> Path:
    """The CVAT COCO 1.0 layout and its zip; returns the zip."""
    (task / COCO_IMAGES).mkdir(parents=True, exist_ok=True)
    (task / COCO_JSON).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(task / COCO_JSON, json.dumps(coco_document(chosen), indent=1) + "\n")
    for candidate in chosen:
        _link_or_copy(task / candidate.image, task / COCO_IMAGES / Path(candidate.image).name)
    with zipfile.ZipFile(task / COCO_ZIP, "w", zipfile.ZIP_STORED) as archive:
        archive.write(task / COCO_JSON, "annotations/instances_default.json")
        for candidate in chosen:
            name = Path(candidate.image).name
            archive.write(task / COCO_IMAGES / name, f"images/default/{name}")
    return task / COCO_ZIP


def ls_result(xyxy: list[float], width: int, height: int, score: float | None, index: int) -> dict:
    """One ``rectanglelabels`` result: pixel corners -> percent of the image."""
    x1, y1, x2, y2 = xyxy
    result = {
        "id": f"r{index}",
        "from_name": LS_FROM,
        "to_name": LS_TO,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": 100 * x1 / width,
            "y": 100 * y1 / height,
            "width": 100 * (x2 - x1) / width,
            "height": 100 * (y2 - y1) / height,
            "rotation": 0,
            "rectanglelabels": [CLASS_NAMES[0]],
        },
    }
    if score is not None:
        result["score"] = score
    return result


def label_studio_tasks(chosen: list[Candidate], image_prefix: str, model_version: str) -> list[dict]:
    """Label Studio tasks: ``data.image`` = ``image_prefix`` + the image path in the task folder."""
    tasks = []
    for candidate in chosen:
        results = [
            ls_result(p.xyxy, candidate.width, candidate.height, p.score, i)
            for i, p in enumerate(candidate.proposals)
        ]
        score = max((p.score for p in candidate.proposals), default=0.0)
        tasks.append(
            {
                "data": {"image": image_prefix + candidate.image, **provenance(candidate)},
                "predictions": [
                    {"model_version": model_version or "edge-data mine", "score": score, "result": results}
                ],
            }
        )
    return tasks


def write_label_studio(
    chosen: list[Candidate], task: Path, model_version: str = "", image_prefix: str = "/data/local-files/?d="
) -> Path:
    """``tasks.json`` and ``label_config.xml``; images are served by Label Studio's local-files
    storage by default (document root = the task folder), or any URL prefix."""
    (task / LS_TASKS).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(task / LS_CONFIG, LABEL_CONFIG)
    tasks = label_studio_tasks(chosen, image_prefix, model_version)
    atomic_write_text(task / LS_TASKS, json.dumps(tasks, indent=1) + "\n")
    return task / LS_TASKS
