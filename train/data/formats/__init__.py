"""Readers for the source annotation formats; each yields ``RawImage`` records for the importer.

A reader only parses: it never decides what is a stop sign. Box coordinates are kept in the
unit the format uses (``normalised`` says which) so no reader needs to open the photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RawObject:
    """One annotated object: source class name and corners ``(x1, y1, x2, y2)``.

    Pixels (exclusive right/bottom edge) when ``normalised`` is False, fractions of the image
    size when True.
    """

    name: str
    xyxy: tuple[float, float, float, float]
    normalised: bool = False


@dataclass
class RawImage:
    """One source photo and all its annotated objects (empty list: nothing annotated)."""

    path: Path
    objects: list[RawObject] = field(default_factory=list)
    split: str = ""  # the split folder the source put it in, if any ("train", "valid", ...)


FORMATS = ("yolo", "voc", "gtsdb", "coco")
