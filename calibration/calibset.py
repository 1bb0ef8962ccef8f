"""A calibration set on disk, fed one batch at a time in the runtime's exact input format.

The folder is normally the output of ``edge-calibrate select`` (letterboxed PNGs + manifest); a
plain folder of images also works and is letterboxed on the fly with the same code. Either way
each batch is ``to_network_input`` of a letterboxed BGR image: (b, 3, H, W) float32, the colour
order and scale of the model's ModelSpec.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.select import IMAGES_DIR, MANIFEST, MIN_CALIBRATION_IMAGES
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.letterbox import resize_for_spec, to_network_input
from stopsign.train.data.layout import IMAGE_SUFFIXES


@dataclass
class CalibrationSet:
    """Image files plus the preprocessing of one model.

    Attributes:
        folder: the calibration folder.
        files: images in set order (already letterboxed when ``letterboxed``).
        spec: the model's ModelSpec (input size, colour order, scale, pad value).
        letterboxed: files are already letterboxed to ``spec.input_size`` by ``select``.
    """

    folder: Path
    files: list[Path]
    spec: ModelSpec
    letterboxed: bool

    @classmethod
    def load(
        cls,
        folder: str | Path,
        spec: ModelSpec,
        limit: int | None = None,
        min_images: int = MIN_CALIBRATION_IMAGES,
    ) -> CalibrationSet:
        """Open ``folder`` for a model with ``spec``; ``limit`` keeps the first N images of the set.

        Raises CalibrationError for a missing folder, fewer than ``min_images`` images, a file that
        is not a decodable image, or a set letterboxed for another input size or pad value.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise CalibrationError(
                f"{folder}: no such calibration folder (make one with `edge-calibrate select`)"
            )
        manifest_path = folder / MANIFEST
        if manifest_path.is_file():
            files = _files_from_manifest(manifest_path, spec)
            letterboxed = True
        else:
            search = folder / IMAGES_DIR if (folder / IMAGES_DIR).is_dir() else folder
            files = sorted(p for p in search.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            letterboxed = False
        if limit is not None:
            files = files[:limit]
        if len(files) < min_images:
            raise CalibrationError(
                f"{folder}: {len(files)} calibration image(s), need at least {min_images}"
                + (f" (limited to {limit})" if limit is not None else "")
            )
        bad = [str(p) for p in files if not cv2.haveImageReader(str(p))]
        if bad:
            raise CalibrationError(f"{folder}: not decodable as images: {', '.join(bad[:5])}")
        return cls(folder, files, spec, letterboxed)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> np.ndarray:
        """Network input of image ``index``: (1, 3, H, W) float32."""
        path = self.files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CalibrationError(f"{path}: unreadable calibration image")
        if self.letterboxed:
            if image.shape[:2] != tuple(self.spec.input_size):
                raise CalibrationError(
                    f"{path}: is {image.shape[1]}x{image.shape[0]}, the set should be letterboxed to "
                    f"{self.spec.input_size[1]}x{self.spec.input_size[0]}"
                )
            boxed = image
        else:
            boxed, _ = resize_for_spec(image, self.spec)
        return to_network_input(boxed, self.spec.scale, rgb=self.spec.color_order == "RGB")

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Batches (b, 3, H, W) float32 of images ``start`` to ``stop``; the last one may be smaller."""
        if batch_size < 1:
            raise CalibrationError(f"batch size must be >= 1, got {batch_size}")
        stop = len(self) if stop is None else min(stop, len(self))
        for first in range(start, stop, batch_size):
            yield np.concatenate([self.image(i) for i in range(first, min(first + batch_size, stop))])


def _files_from_manifest(manifest_path: Path, spec: ModelSpec) -> list[Path]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        size = tuple(int(v) for v in manifest["input_size"])
        pad = int(manifest["pad_value"])
        resize = str(manifest.get("resize", "letterbox"))  # sets made before the field: letterbox
        names = [str(record["file"]) for record in manifest["images"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{manifest_path}: not a readable calibration manifest ({exc})") from None
    if size != tuple(spec.input_size):
        raise CalibrationError(
            f"{manifest_path}: the set was letterboxed to {size[1]}x{size[0]} but the model takes "
            f"{spec.input_size[1]}x{spec.input_size[0]}; rerun `edge-calibrate select --img {spec.input_size[0]}`"
        )
    if pad != spec.pad_value:
        raise CalibrationError(
            f"{manifest_path}: pad value {pad} differs from the model's {spec.pad_value}; rerun `edge-calibrate select`"
        )
    if resize != spec.resize:
        raise CalibrationError(
            f"{manifest_path}: the set was made with resize {resize!r} but the model uses {spec.resize!r}; "
            "rerun `edge-calibrate select --model MODEL`"
        )
    files = [manifest_path.parent / name for name in names]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise CalibrationError(f"{manifest_path}: lists missing file(s): {', '.join(missing[:5])}")
    return files
