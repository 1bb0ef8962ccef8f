"""The canonical dataset layout every ``edge-data`` command reads and writes.

A dataset is a folder::

    DIR/images/<name>.jpg      BGR photos (JPEG)
    DIR/labels/<name>.txt      one line per stop sign: ``0 cx cy w h`` normalised to [0, 1]
    DIR/sources.jsonl          one JSON object per image: provenance and role (see ``SourceRecord``)
    DIR/train.txt, val.txt     image paths relative to DIR, one per line
    DIR/data.yaml              ``names: [stop_sign]``, ``nc: 1``, ``train: train.txt``, ``val: val.txt``

Images without any stop sign have an empty label file: they are negatives, and the ``role``
in ``sources.jsonl`` says whether they show a look-alike (``confuser``) or nothing (``negative``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stopsign.edge.model.artifacts import atomic_write_text

CLASS_NAMES: tuple[str, ...] = ("stop_sign",)
ROLES: tuple[str, ...] = ("stop", "confuser", "negative")
IMAGES = "images"
LABELS = "labels"
SOURCES = "sources.jsonl"
DATA_YAML = "data.yaml"
TRAIN_LIST = "train.txt"
VAL_LIST = "val.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the file and the reason."""


@dataclass
class SourceRecord:
    """Provenance of one image of a canonical dataset (one line of ``sources.jsonl``).

    ``confusers`` lists look-alike objects that are NOT labelled as stop signs, each
    ``{"name": str, "xyxy": [x1, y1, x2, y2]}`` normalised to [0, 1]; drive building zooms on them.
    """

    image: str
    source: str
    original: str
    licence: str
    role: str
    n_stop: int = 0
    confusers: list[dict[str, Any]] = field(default_factory=list)
    dropped_back_faces: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def safe_name(text: str) -> str:
    """File-system- and YOLO-list-safe version of ``text`` (no spaces, slashes or odd characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned or "image"


def xyxy_to_yolo(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, 4) pixel corners -> (n, 4) normalised ``cx cy w h``, clipped to the image."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    out = np.empty_like(boxes)
    out[:, 0] = (boxes[:, 0] + boxes[:, 2]) / 2 / width
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2 / height
    out[:, 2] = (boxes[:, 2] - boxes[:, 0]) / width
    out[:, 3] = (boxes[:, 3] - boxes[:, 1]) / height
    return out


def yolo_to_xyxy(cxcywh: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, 4) normalised ``cx cy w h`` -> (n, 4) float32 pixel corners."""
    b = np.asarray(cxcywh, dtype=np.float64).reshape(-1, 4)
    out = np.stack(
        [
            (b[:, 0] - b[:, 2] / 2) * width,
            (b[:, 1] - b[:, 3] / 2) * height,
            (b[:, 0] + b[:, 2] / 2) * width,
            (b[:, 1] + b[:, 3] / 2) * height,
        ],
        axis=1,
    )
    return out.astype(np.float32)


def format_label_lines(cxcywh: np.ndarray, class_id: int = 0) -> str:
    """YOLO label text for (n, 4) normalised boxes; empty string for a negative."""
    return "".join(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for cx, cy, w, h in cxcywh)


def write_data_yaml(root: Path, extra: dict[str, Any] | None = None) -> None:
    """``data.yaml`` naming the one class and the split lists (relative to ``root``)."""
    doc: dict[str, Any] = {
        "path": ".",
        "train": TRAIN_LIST,
        "val": VAL_LIST,
        "nc": len(CLASS_NAMES),
        "names": list(CLASS_NAMES),
    }
    if extra:
        doc.update(extra)
    atomic_write_text(root / DATA_YAML, yaml.safe_dump(doc, sort_keys=False))


def read_data_yaml(root: Path) -> dict[str, Any]:
    path = root / DATA_YAML
    if not path.is_file():
        raise DatasetError(f"{path}: missing (not a canonical dataset folder)")
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or "names" not in doc:
        raise DatasetError(f"{path}: expected a mapping with 'names', got {doc!r}")
    return doc


def read_sources(root: Path) -> dict[str, SourceRecord]:
    """``sources.jsonl`` as {image name: record}; a bad line is a DatasetError naming file:line."""
    path = root / SOURCES
    records: dict[str, SourceRecord] = {}
    if not path.is_file():
        return records
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = SourceRecord(**json.loads(line))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DatasetError(f"{path}:{line_no}: bad source record: {exc}") from exc
        records[rec.image] = rec
    return records


def write_sources(root: Path, records: list[SourceRecord]) -> None:
    atomic_write_text(root / SOURCES, "".join(r.to_json() + "\n" for r in records))


def read_list(root: Path, name: str) -> list[str]:
    """Entries of a split list file (``images/x.jpg`` relative to ``root``); [] when absent."""
    path = root / name
    if not path.is_file():
        return []
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def write_list(root: Path, name: str, entries: list[str]) -> None:
    atomic_write_text(root / name, "".join(e + "\n" for e in entries))


def list_images(root: Path) -> list[Path]:
    folder = root / IMAGES
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def label_path_for(image: Path) -> Path:
    """``DIR/images/x.jpg`` -> ``DIR/labels/x.txt``."""
    return image.parent.parent / LABELS / (image.stem + ".txt")
