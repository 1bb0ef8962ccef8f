"""Find the images (and, where present, labels, roles and sources) of a data folder.

Two layouts are read:

- the canonical dataset of ``edge-data`` (``stopsign.train.data.layout``): ``DIR/images``,
  ``DIR/labels`` (YOLO txt), ``DIR/sources.jsonl`` (source and role per image), optional
  ``DIR/val.txt``;
- a plain folder of images (searched recursively), with optional YOLO ``.txt`` labels next to
  each image. Without labels the role is ``"unlabelled"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stopsign.calibration.errors import CalibrationError
from stopsign.train.data import layout
from stopsign.train.data.labels import parse_label_text, to_array

UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class ImageEntry:
    """One image of a data folder.

    Attributes:
        path: the image file.
        boxes: (n, 4) float32 stop-sign boxes, normalised ``cx cy w h`` in [0, 1]; (0, 4) for none.
        role: "stop", "confuser", "negative" (canonical roles) or "unlabelled".
        source: where the image came from (``sources.jsonl``'s ``source``, else the folder name).
        labelled: whether a label file exists, so an empty ``boxes`` means "no stop sign".
    """

    path: Path
    boxes: np.ndarray
    role: str
    source: str
    labelled: bool


def scan_data(root: str | Path, split: str | None = None) -> list[ImageEntry]:
    """All images of ``root`` in a stable (sorted) order.

    Args:
        root: a canonical dataset folder or a plain folder of images.
        split: "val" or "train" to restrict a canonical dataset to its split list (all images
            when the list file is absent); ignored for a plain folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CalibrationError(f"{root}: no such data folder")
    canonical = (root / layout.IMAGES).is_dir()
    entries = _scan_canonical(root, split) if canonical else _scan_plain(root)
    if not entries:
        raise CalibrationError(
            f"{root}: no images found (looked for {', '.join(layout.IMAGE_SUFFIXES)} "
            f"{'in ' + str(root / layout.IMAGES) if canonical else 'recursively'})"
        )
    return entries


def read_yolo_boxes(label_file: Path) -> np.ndarray:
    """Stop-sign boxes (class 0) of a YOLO label file as (n, 4) normalised cx cy w h."""
    lines, bad = parse_label_text(label_file.read_text(encoding="utf-8"), nc=1)
    if bad:
        line_no, reason = bad[0]
        raise CalibrationError(f"{label_file}:{line_no}: {reason}")
    _, boxes = to_array(lines)
    return boxes


def _scan_canonical(root: Path, split: str | None) -> list[ImageEntry]:
    sources = {Path(name).name: rec for name, rec in layout.read_sources(root).items()}
    if split is not None:
        listed = layout.read_list(root, f"{split}.txt")
        images = [root / entry for entry in listed] if listed else layout.list_images(root)
    else:
        images = layout.list_images(root)
    entries = []
    for image in images:
        label_file = layout.label_path_for(image)
        labelled = label_file.is_file()
        boxes = read_yolo_boxes(label_file) if labelled else np.zeros((0, 4), np.float32)
        record = sources.get(image.name)
        if record is not None:
            role, source = record.role, record.source
        else:
            role = ("stop" if len(boxes) else "negative") if labelled else UNLABELLED
            source = root.name
        entries.append(ImageEntry(image, boxes, role, source, labelled))
    return entries


def _scan_plain(root: Path) -> list[ImageEntry]:
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in layout.IMAGE_SUFFIXES)
    entries = []
    for image in images:
        label_file = image.with_suffix(".txt")
        labelled = label_file.is_file()
        boxes = read_yolo_boxes(label_file) if labelled else np.zeros((0, 4), np.float32)
        role = ("stop" if len(boxes) else "negative") if labelled else UNLABELLED
        source = image.parent.name if image.parent != root else root.name
        entries.append(ImageEntry(image, boxes, role, source, labelled))
    return entries
