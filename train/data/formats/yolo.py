"""YOLO txt exports (Roboflow style): ``data.yaml`` with ``names`` and ``<split>/images`` + ``<split>/labels``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from stopsign.train.data.formats import RawImage, RawObject
from stopsign.train.data.labels import LabelError, parse_label_line
from stopsign.train.data.layout import IMAGE_SUFFIXES, DatasetError


def read_names(root: Path) -> list[str]:
    """Class names from ``root/data.yaml`` (list or {id: name} mapping)."""
    path = root / "data.yaml"
    if not path.is_file():
        raise DatasetError(f"{path}: missing; a YOLO export needs data.yaml with 'names'")
    doc = yaml.safe_load(path.read_text())
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: 'names' must be a non-empty list, got {names!r}")
    return [str(n) for n in names]


def read_yolo(root: Path) -> Iterator[RawImage]:
    """Every image under any ``images/`` folder in ``root``, with the labels of the sibling ``labels/``."""
    names = read_names(root)
    image_dirs = sorted(p for p in root.rglob("images") if p.is_dir())
    if not image_dirs:
        raise DatasetError(f"{root}: no 'images' folder found")
    for image_dir in image_dirs:
        split = image_dir.parent.name if image_dir.parent != root else ""
        label_dir = image_dir.parent / "labels"
        for image in sorted(image_dir.iterdir()):
            if image.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            label = label_dir / (image.stem + ".txt")
            objects: list[RawObject] = []
            if label.is_file():
                for line_no, line in enumerate(label.read_text().splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        parsed = parse_label_line(line, len(names))
                    except LabelError as exc:
                        raise DatasetError(f"{label}:{line_no}: {exc}") from None
                    x1, y1 = parsed.cx - parsed.w / 2, parsed.cy - parsed.h / 2
                    objects.append(
                        RawObject(
                            names[parsed.class_id],
                            (x1, y1, x1 + parsed.w, y1 + parsed.h),
                            normalised=True,
                        )
                    )
            yield RawImage(image, objects, split)
