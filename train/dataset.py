"""The images and labels of a training run: ``data.yaml``, label files, provenance, decoded-image cache.

Canonical layout (see ``stopsign.train.data.layout``)::

    DIR/images/*.jpg   DIR/labels/*.txt (``cls cx cy w h`` normalised; empty = negative image)
    DIR/data.yaml      names, nc, train, val (a folder of images or a .txt list, relative to the yaml)
    DIR/sources.jsonl  optional provenance: source name and role (stop / confuser / negative) per image
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from stopsign.train.data.labels import parse_label_text
from stopsign.train.data.layout import IMAGE_SUFFIXES, DatasetError, read_sources


@dataclass
class Split:
    """One split: image paths with their labels (n, 5) float32 ``cls cx cy w h`` normalised."""

    images: list[Path]
    labels: list[np.ndarray]
    sources: list[str] = field(default_factory=list)  # provenance source per image ("" unknown)
    roles: list[str] = field(default_factory=list)  # "stop" / "confuser" / "negative"

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DataSpec:
    """A parsed data.yaml: dataset root, class names and the two splits."""

    yaml_path: Path
    root: Path
    names: list[str]
    train: Split
    val: Split

    @property
    def nc(self) -> int:
        return len(self.names)


def find_data_yaml(data: str | Path) -> Path:
    """``data`` is a data.yaml or a folder holding one."""
    path = Path(data)
    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise DatasetError(f"{path}: no such data.yaml (give --data DIR/data.yaml or a dataset folder)")
    return path


def label_path_for(image: Path) -> Path:
    """``.../images/sub/x.jpg`` -> ``.../labels/sub/x.txt`` (the last ``images`` folder is swapped)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    raise DatasetError(f"{image}: image is not inside an 'images' folder, so its label file cannot be found")


def _list_split(entry: str | list, base: Path, yaml_path: Path, key: str) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        path = (base / str(item)).resolve()
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file() and path.suffix == ".txt":
            for line_no, line in enumerate(path.read_text().splitlines(), start=1):
                line = line.strip()
                if not line:
                    continue
                image = (path.parent / line).resolve()
                if not image.is_file():
                    raise DatasetError(f"{path}:{line_no}: listed image {line!r} does not exist")
                images.append(image)
        else:
            raise DatasetError(f"{yaml_path}: {key}: {item!r} is neither a folder nor a .txt list ({path})")
    if not images:
        raise DatasetError(f"{yaml_path}: {key} split {entry!r} holds no images")
    return images


def read_labels(image: Path, nc: int) -> np.ndarray:
    """Labels of one image as (n, 5) float32; a missing or empty label file is a negative image."""
    label = label_path_for(image)
    if not label.is_file():
        return np.zeros((0, 5), np.float32)
    good, bad = parse_label_text(label.read_text(errors="replace"), nc)
    if bad:
        line_no, reason = bad[0]
        raise DatasetError(f"{label}:{line_no}: {reason}")
    return np.array([[g.class_id, g.cx, g.cy, g.w, g.h] for g in good], np.float32).reshape(-1, 5)


def _provenance(split: Split, root: Path) -> None:
    records = read_sources(root)
    for image, labels in zip(split.images, split.labels):
        try:
            relative = image.relative_to(root).as_posix()
        except ValueError:
            relative = image.name
        record = records.get(relative) or records.get(image.name)
        split.sources.append(record.source if record else "")
        split.roles.append(record.role if record else ("stop" if len(labels) else "negative"))


def load_data_spec(data: str | Path, check: bool = True) -> DataSpec:
    """Parse data.yaml, read every label (errors name file:line) and the provenance file."""
    yaml_path = find_data_yaml(data)
    try:
        doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{yaml_path}: invalid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with names, nc, train, val")
    for key in ("names", "train", "val"):
        if key not in doc:
            raise DatasetError(f"{yaml_path}: missing key {key!r}")
    names = doc["names"]
    if isinstance(names, dict):  # YOLOv5 also allows {0: name, ...}
        names = [names[k] for k in sorted(names)]
    names = [str(n) for n in names]
    if "nc" in doc and int(doc["nc"]) != len(names):
        raise DatasetError(f"{yaml_path}: nc={doc['nc']} but {len(names)} names {names}")
    root = (yaml_path.parent / str(doc.get("path") or ".")).resolve()
    if check and (root / "images").is_dir():
        _check_canonical(root, len(names))
    splits = {}
    for key in ("train", "val"):
        images = _list_split(doc[key], root, yaml_path, key)
        split = Split(images=images, labels=[read_labels(p, len(names)) for p in images])
        _provenance(split, root)
        splits[key] = split
    return DataSpec(yaml_path=yaml_path, root=root, names=names, train=splits["train"], val=splits["val"])


def _check_canonical(root: Path, nc: int) -> None:
    """The same checks and messages as ``edge-data check``; errors stop training, warnings print."""
    from stopsign.train.data.check import check_dataset

    problems = check_dataset(root, nc)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        shown = "\n".join(str(p) for p in errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise DatasetError(f"{root}: {len(errors)} dataset error(s) (edge-data check {root}):\n{shown}{more}")
    for problem in problems[:10]:
        print(f"dataset warning: {problem}")


# --- decoded images -------------------------------------------------------------------------------


def load_resized(path: Path, size: int) -> np.ndarray:
    """BGR uint8 image with its longer side scaled to ``size`` pixels (aspect ratio kept)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: cannot decode image")
    h, w = image.shape[:2]
    ratio = size / max(h, w)
    if ratio != 1:
        interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        new_size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        image = cv2.resize(image, new_size, interpolation=interpolation)
    return image


class ImageStore:
    """Decoded, resized images: read on demand, or cached in RAM or as .npy files on disk.

    The RAM cache is filled in the main process before loader workers fork, so workers share it.
    The disk cache lives under ``cache_dir`` (never inside the dataset, which may be read-only).
    """

    def __init__(self, images: list[Path], size: int, mode: str = "", cache_dir: Path | None = None):
        if mode not in ("", "ram", "disk"):
            raise ValueError(f"cache mode must be '', 'ram' or 'disk', got {mode!r}")
        if mode == "disk" and cache_dir is None:
            raise ValueError("the disk cache needs a cache_dir")
        self.images, self.size, self.mode = images, size, mode
        self._ram: list[np.ndarray] = []
        self._npy: list[Path] = []
        if mode == "disk":
            assert cache_dir is not None
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._npy = [cache_dir / f"{self._key(p)}.npy" for p in images]
        if mode:
            self._fill()

    def _key(self, path: Path) -> str:
        stat = path.stat()
        text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.size}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def _fill(self) -> None:
        # Decoding and resizing release the GIL in OpenCV, so threads fill the cache in parallel.
        threads = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            done = pool.map(self._fill_one, range(len(self.images)))
            filled = list(
                tqdm(done, total=len(self.images), desc=f"caching images ({self.mode})", unit="img")
            )
        if self.mode == "ram":
            self._ram = [image for image in filled if image is not None]
            total = sum(image.nbytes for image in self._ram)
            print(f"cached {len(self._ram)} images in RAM ({total / 2**30:.2f} GiB)")

    def _fill_one(self, index: int) -> np.ndarray | None:
        """The decoded image (RAM mode), or None once its .npy file exists (disk mode)."""
        path = self.images[index]
        if self.mode == "ram":
            return load_resized(path, self.size)
        npy = self._npy[index]
        if not npy.is_file():
            tmp = npy.with_suffix(f".{os.getpid()}.{index}.tmp.npy")
            np.save(tmp, load_resized(path, self.size))
            tmp.replace(npy)
        return None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        if self.mode == "ram":
            return self._ram[index]
        if self.mode == "disk":
            return np.load(self._npy[index])
        return load_resized(self.images[index], self.size)
