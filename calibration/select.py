"""``edge-calibrate select``: a calibration set that covers what the car will see.

Every image is put in a stratum ``(role, size, light, source)``:

- size of its largest stop sign after letterboxing to the network input (longer side, input
  pixels): ``far`` < ``far_max_px`` <= ``mid`` < ``near_min_px`` <= ``near``; ``none`` without one;
- light from the mean luma (0-255) of the image: ``night`` < ``night_max_luma`` <= ``dusk`` <
  ``dusk_max_luma`` <= ``day``;
- role ("stop", "confuser", "negative", "unlabelled") and source from the dataset.

Allocation gives every stratum one image first (coverage: rare night or far-sign strata would
otherwise get none), then the rest in proportion to stratum size (so the activation ranges still
follow the deployment distribution). The picked images are letterboxed with the runtime's own
:func:`stopsign.edge.vision.letterbox.letterbox` and written as lossless PNGs, in an order that
interleaves the strata, so any prefix of the set (used when a method caps the image count) is
itself spread over all strata.

Output folder::

    DIR/images/00000.png ...   letterboxed BGR uint8, input_size
    DIR/calibration.txt        the original image paths, one per line, in set order
    DIR/manifest.json          options, per-image strata, counts per stratum (written last)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from stopsign.calibration.dataset import ImageEntry, scan_data
from stopsign.calibration.errors import CalibrationError
from stopsign.edge.model.artifacts import atomic_write_bytes, atomic_write_text, sha256_file
from stopsign.edge.vision.letterbox import compute_transform, letterbox

MANIFEST = "manifest.json"
PICKED_LIST = "calibration.txt"
IMAGES_DIR = "images"
MANIFEST_VERSION = 1
# Below this many images the activation ranges are noise; ONNX Runtime and TensorRT both accept fewer.
MIN_CALIBRATION_IMAGES = 8

Stratum = tuple[str, str, str, str]  # (role, size, light, source)


@dataclass(frozen=True)
class SelectOptions:
    """How ``select`` picks and preprocesses (thresholds in network-input pixels / luma 0-255)."""

    n: int = 500
    input_size: tuple[int, int] = (416, 416)
    pad_value: int = 114
    resize: str = "letterbox"  # ModelSpec.resize of the model the set is for
    seed: int = 0
    far_max_px: float = 32.0
    near_min_px: float = 96.0
    night_max_luma: float = 60.0
    dusk_max_luma: float = 110.0
    skip_unreadable: bool = False
    min_images: int = MIN_CALIBRATION_IMAGES

    def validate(self) -> None:
        if self.n < self.min_images:
            raise CalibrationError(
                f"--n {self.n} is below the minimum of {self.min_images} calibration images"
            )
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise CalibrationError(f"input size must be (height, width) > 0, got {self.input_size}")
        if not 0 < self.far_max_px < self.near_min_px:
            raise CalibrationError(
                f"need 0 < far_max_px ({self.far_max_px}) < near_min_px ({self.near_min_px})"
            )
        if not 0 < self.night_max_luma < self.dusk_max_luma < 255:
            raise CalibrationError(
                f"need 0 < night_max_luma ({self.night_max_luma}) < dusk_max_luma ({self.dusk_max_luma}) < 255"
            )


@dataclass
class Candidate:
    """An image with its stratum, as measured by :func:`measure`."""

    entry: ImageEntry
    luma: float
    largest_px: float  # longer side of the largest stop sign in network-input px; 0 when none
    size: str
    light: str

    @property
    def stratum(self) -> Stratum:
        return (self.entry.role, self.size, self.light, self.entry.source)


@dataclass
class SelectResult:
    out: Path
    picked: list[Candidate]
    available: int
    unreadable: list[str] = field(default_factory=list)
    strata_available: dict[str, int] = field(default_factory=dict)
    strata_picked: dict[str, int] = field(default_factory=dict)


def size_bucket(largest_px: float, options: SelectOptions) -> str:
    if largest_px <= 0:
        return "none"
    if largest_px < options.far_max_px:
        return "far"
    return "mid" if largest_px < options.near_min_px else "near"


def light_bucket(luma: float, options: SelectOptions) -> str:
    if luma < options.night_max_luma:
        return "night"
    return "dusk" if luma < options.dusk_max_luma else "day"


def measure(entry: ImageEntry, image: np.ndarray, options: SelectOptions) -> Candidate:
    """Brightness and sign size of one HxWx3 BGR image."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (64, max(1, round(64 * height / width))), interpolation=cv2.INTER_AREA)
    luma = float(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).mean())
    largest = 0.0
    if len(entry.boxes):
        transform, _ = compute_transform((height, width), options.input_size, resize=options.resize)
        scale_x, scale_y = transform.scale_xy
        sides = np.maximum(entry.boxes[:, 2] * width * scale_x, entry.boxes[:, 3] * height * scale_y)
        largest = float(sides.max())
    return Candidate(entry, luma, largest, size_bucket(largest, options), light_bucket(luma, options))


def allocate(sizes: dict[Stratum, int], n: int) -> dict[Stratum, int]:
    """Images per stratum: one each first (largest strata first when ``n`` < strata), the rest by size.

    The result sums to ``min(n, sum(sizes))`` and never exceeds a stratum's size.
    """
    keys = sorted(sizes, key=lambda k: (-sizes[k], k))
    n = min(n, sum(sizes.values()))
    alloc = dict.fromkeys(keys, 0)
    for key in keys[:n]:
        alloc[key] = 1
    remaining = n - sum(alloc.values())
    capacity = {k: sizes[k] - alloc[k] for k in keys}
    total_capacity = sum(capacity.values())
    if remaining <= 0 or total_capacity == 0:
        return alloc
    quotas = {k: remaining * capacity[k] / total_capacity for k in keys}
    for key in keys:
        alloc[key] += math.floor(quotas[key])
    leftover = n - sum(alloc.values())
    by_fraction = sorted(keys, key=lambda k: (-(quotas[k] - math.floor(quotas[k])), keys.index(k)))
    for key in by_fraction:
        if leftover == 0:
            break
        if alloc[key] < sizes[key]:
            alloc[key] += 1
            leftover -= 1
    return alloc


def pick(candidates: list[Candidate], n: int, seed: int) -> list[Candidate]:
    """Stratified random pick of ``n`` candidates, ordered round-robin across strata."""
    groups: dict[Stratum, list[Candidate]] = {}
    for cand in candidates:
        groups.setdefault(cand.stratum, []).append(cand)
    alloc = allocate({k: len(v) for k, v in groups.items()}, n)
    rng = np.random.default_rng(seed)
    chosen: dict[Stratum, list[Candidate]] = {}
    for key in sorted(groups):
        order = rng.permutation(len(groups[key]))[: alloc[key]]
        chosen[key] = [groups[key][i] for i in sorted(order)]
    ordered: list[Candidate] = []
    depth = max((len(v) for v in chosen.values()), default=0)
    for level in range(depth):
        ordered.extend(v[level] for k, v in sorted(chosen.items()) if level < len(v))
    return ordered


def select_calibration_set(data: str | Path, out: str | Path, options: SelectOptions) -> SelectResult:
    """Measure every image of ``data``, pick ``options.n`` stratified, write the set to ``out``."""
    options.validate()
    out = Path(out)
    _check_out_folder(out)
    entries = scan_data(data)
    candidates: list[Candidate] = []
    unreadable: list[str] = []
    for entry in tqdm(entries, desc="measure", unit="img"):
        image = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
        if image is None:
            unreadable.append(str(entry.path))
            continue
        candidates.append(measure(entry, image, options))
    if unreadable and not options.skip_unreadable:
        shown = ", ".join(unreadable[:5]) + (
            f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        )
        raise CalibrationError(
            f"{data}: {len(unreadable)} unreadable image(s): {shown} (fix or remove them, or pass --skip-unreadable)"
        )
    if len(candidates) < options.n:
        raise CalibrationError(
            f"{data}: only {len(candidates)} usable image(s) but --n {options.n} was asked"
            f"{f' ({len(unreadable)} unreadable skipped)' if unreadable else ''}; lower --n or add images"
        )
    picked = pick(candidates, options.n, options.seed)
    result = SelectResult(
        out=out,
        picked=picked,
        available=len(candidates),
        unreadable=unreadable,
        strata_available=_count(candidates),
        strata_picked=_count(picked),
    )
    _write(result, Path(data), options)
    return result


def _count(candidates: list[Candidate]) -> dict[str, int]:
    counts = Counter("/".join(c.stratum) for c in candidates)
    return dict(sorted(counts.items()))


def _check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CalibrationError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise CalibrationError(
            f"{out}: folder is not empty and is not a calibration set; choose another --out"
        )


def _write(result: SelectResult, data: Path, options: SelectOptions) -> None:
    images_dir = result.out / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    for old in images_dir.glob("*.png"):  # a rerun replaces the previous set
        old.unlink()
    (result.out / MANIFEST).unlink(missing_ok=True)
    buffer = np.empty((*options.input_size, 3), dtype=np.uint8)
    records: list[dict[str, Any]] = []
    for index, cand in enumerate(tqdm(result.picked, desc="letterbox", unit="img")):
        image = cv2.imread(str(cand.entry.path), cv2.IMREAD_COLOR)
        if image is None:  # changed on disk since it was measured
            raise CalibrationError(f"{cand.entry.path}: became unreadable while writing the calibration set")
        boxed, _ = letterbox(image, options.input_size, options.pad_value, out=buffer, resize=options.resize)
        ok, encoded = cv2.imencode(".png", boxed)
        if not ok:
            raise CalibrationError(f"{cand.entry.path}: PNG encoding of the letterboxed image failed")
        name = f"{index:05d}.png"
        atomic_write_bytes(images_dir / name, encoded.tobytes())
        records.append(
            {
                "file": f"{IMAGES_DIR}/{name}",
                "original": str(cand.entry.path),
                "original_sha256": sha256_file(cand.entry.path),
                "role": cand.entry.role,
                "source": cand.entry.source,
                "size": cand.size,
                "light": cand.light,
                "luma": round(cand.luma, 2),
                "largest_sign_px": round(cand.largest_px, 2),
            }
        )
    atomic_write_text(result.out / PICKED_LIST, "".join(r["original"] + "\n" for r in records))
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "data": str(data),
        "options": {**asdict(options), "input_size": list(options.input_size)},
        "input_size": list(options.input_size),
        "pad_value": options.pad_value,
        "resize": options.resize,
        "n_available": result.available,
        "n_selected": len(records),
        "unreadable_skipped": result.unreadable,
        "strata_available": result.strata_available,
        "strata_selected": result.strata_picked,
        "images": records,
    }
    atomic_write_text(result.out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
