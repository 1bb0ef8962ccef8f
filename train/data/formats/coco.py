"""COCO detection json: ``images``, ``annotations`` (bbox ``[x, y, w, h]`` pixels), ``categories``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from stopsign.train.data.formats import RawImage, RawObject
from stopsign.train.data.layout import DatasetError


def _find_json(src: Path) -> Path:
    if src.is_file():
        return src
    candidates = sorted(src.glob("*.json")) + sorted(src.glob("annotations/*.json"))
    if len(candidates) != 1:
        raise DatasetError(f"{src}: expected exactly one COCO .json, found {[str(c) for c in candidates]}")
    return candidates[0]


def read_coco(src: Path) -> Iterator[RawImage]:
    """``src`` is the json file or a folder holding it; ``file_name`` is looked up beside it or in images/."""
    path = _find_json(src)
    try:
        doc = json.loads(path.read_text())
        categories = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        images = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a COCO detection file: {exc!r}") from None
    objects: dict[int, list[RawObject]] = defaultdict(list)
    for index, ann in enumerate(doc.get("annotations", [])):
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            name = categories[int(ann["category_id"])]
            image_id = int(ann["image_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: annotation {index}: {exc!r}") from None
        if image_id not in images:
            raise DatasetError(f"{path}: annotation {index} names unknown image_id {image_id}")
        objects[image_id].append(RawObject(name, (x, y, x + w, y + h)))
    base = path.parent
    for image_id, file_name in sorted(images.items()):
        image = base / file_name
        if not image.is_file() and (base / "images" / file_name).is_file():
            image = base / "images" / file_name
        if not image.is_file():
            raise DatasetError(f"{path}: image {file_name!r} (id {image_id}) not found beside the json")
        yield RawImage(image, objects.get(image_id, []))
