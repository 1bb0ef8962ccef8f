"""Pascal VOC: one ``annotations/<name>.xml`` per photo in ``images/`` (or JPEGImages/Annotations)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from stopsign.train.data.formats import RawImage, RawObject
from stopsign.train.data.layout import IMAGE_SUFFIXES, DatasetError


def _find_dir(root: Path, candidates: tuple[str, ...]) -> Path:
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"{root}: none of the folders {', '.join(candidates)} exists")


def parse_voc_xml(path: Path) -> list[RawObject]:
    """Objects of one VOC file; VOC corners are 1-based inclusive, converted to 0-based exclusive."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML: {exc}") from None
    objects: list[RawObject] = []
    for index, obj in enumerate(tree.getroot().iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise DatasetError(f"{path}: object {index} lacks <name> or <bndbox>")
        try:
            x1, y1, x2, y2 = (float(box.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise DatasetError(f"{path}: object {index} ({name}) has a bad coordinate: {exc}") from None
        objects.append(RawObject(name, (x1 - 1, y1 - 1, x2, y2)))
    return objects


def read_voc(root: Path) -> Iterator[RawImage]:
    image_dir = _find_dir(root, ("images", "JPEGImages"))
    ann_dir = _find_dir(root, ("annotations", "Annotations"))
    for image in sorted(image_dir.iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        xml = ann_dir / (image.stem + ".xml")
        yield RawImage(image, parse_voc_xml(xml) if xml.is_file() else [])
