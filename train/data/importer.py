"""Convert a source set (YOLO, VOC, GTSDB, COCO) into the canonical layout (see ``layout``).

Every source object is one of: a stop sign (``mapping``: written as class 0), dropped
(``drop``: e.g. Roboflow's ``Pole``), or a look-alike that stays unlabelled and makes the photo a
hard negative (``confusers``). Photos with no stop sign are kept as negatives; nothing is lost.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from stopsign.train.data import layout
from stopsign.train.data.backface import is_back_face
from stopsign.train.data.formats import FORMATS, RawImage
from stopsign.train.data.formats.coco import read_coco
from stopsign.train.data.formats.gtsdb import CONFUSER_CLASSES, STOP_CLASS, read_gtsdb
from stopsign.train.data.formats.voc import read_voc
from stopsign.train.data.formats.yolo import read_yolo
from stopsign.train.data.layout import DatasetError, SourceRecord

STOP = layout.CLASS_NAMES[0]
GTSDB_LICENCE = "free for any purpose; cite Houben et al., IJCNN 2013"


@dataclass
class ImportOptions:
    """How to read one source set.

    mapping: source class name -> ``stop_sign`` (the only target). Empty: the format's default
      (GTSDB ``14``; otherwise every name containing "stop", case-insensitive).
    drop: source class names removed entirely (they neither label nor make a confuser).
    confusers: names that make a photo a ``confuser``; None = every other annotated class
      (GTSDB default: the red-rim, give-way and no-entry classes).
    keep_back_faces: keep stop boxes whose red fraction says they show the grey back.
    """

    fmt: str
    mapping: dict[str, str] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    confusers: set[str] | None = None
    keep_back_faces: bool = False
    source_name: str = ""
    licence: str = ""
    val: float = 0.2
    seed: int = 0


@dataclass
class ImportSummary:
    source: str
    images: int = 0
    stop_boxes: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    dropped_back_faces: int = 0
    dropped_objects: Counter[str] = field(default_factory=Counter)
    confuser_objects: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        roles = ", ".join(f"{r}={self.roles.get(r, 0)}" for r in layout.ROLES)
        return [
            f"{self.source}: {self.images} images, {self.stop_boxes} stop boxes ({roles})",
            f"  back faces dropped: {self.dropped_back_faces}; dropped objects: {dict(self.dropped_objects)}",
            f"  confuser objects: {dict(self.confuser_objects)}",
        ]


def read_source(src: Path, fmt: str) -> Iterator[RawImage]:
    readers = {"yolo": read_yolo, "voc": read_voc, "gtsdb": read_gtsdb, "coco": read_coco}
    if fmt not in readers:
        raise DatasetError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not src.exists():
        raise DatasetError(f"{src}: source does not exist")
    return readers[fmt](src)


def guess_licence(src: Path, fmt: str) -> str:
    """Licence text from the export's own files (Roboflow README/data.yaml, GTSDB), else 'unknown'."""
    if fmt == "gtsdb":
        return GTSDB_LICENCE
    readme = src / "README.dataset.txt"
    if readme.is_file():
        for line in readme.read_text(errors="replace").splitlines():
            if line.lower().startswith("license:"):
                return line.split(":", 1)[1].strip()
    data_yaml = src / "data.yaml"
    if data_yaml.is_file():
        doc = yaml.safe_load(data_yaml.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("roboflow"), dict):
            return str(doc["roboflow"].get("license", "unknown"))
    return "unknown"


def _resolve_mapping(options: ImportOptions, names: Iterable[str]) -> dict[str, str]:
    for name, target in options.mapping.items():
        if target != STOP:
            raise DatasetError(f"--map {name}={target}: the only target class is {STOP!r}")
    if options.mapping:
        return dict(options.mapping)
    if options.fmt == "gtsdb":
        return {STOP_CLASS: STOP}
    mapping = {n: STOP for n in names if "stop" in n.lower() and n not in options.drop}
    return mapping


def import_dataset(src: Path, out: Path, options: ImportOptions) -> ImportSummary:
    """Import ``src`` into a new canonical dataset at ``out`` (must not exist or be empty).

    Writes images (JPEG bytes copied as-is, other formats re-encoded), labels, sources.jsonl,
    a stratified train/val split and data.yaml. Returns the counts.
    """
    from stopsign.train.data.split import split_dataset

    src, out = Path(src), Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: output folder exists and is not empty; choose a new folder")
    raws = list(read_source(src, options.fmt))
    names = sorted({o.name for r in raws for o in r.objects})
    mapping = _resolve_mapping(options, names)
    unknown = sorted(set(mapping) - set(names))
    if names and not mapping:
        raise DatasetError(f"{src}: no class maps to {STOP}; classes are {names}; use --map NAME={STOP}")
    if unknown:
        raise DatasetError(f"{src}: --map names {unknown} not among the source classes {names}")
    confusers = options.confusers
    if confusers is None and options.fmt == "gtsdb":
        confusers = set(CONFUSER_CLASSES)
    source = options.source_name or layout.safe_name(src.name if src.is_dir() else src.stem)
    licence = options.licence or guess_licence(src if src.is_dir() else src.parent, options.fmt)

    (out / layout.IMAGES).mkdir(parents=True)
    (out / layout.LABELS).mkdir()
    summary = ImportSummary(source)
    records: list[SourceRecord] = []
    used: set[str] = set()
    for raw in tqdm(raws, desc=f"import {source}", unit="img", leave=False):
        record, label_text = _convert(raw, mapping, options, confusers, summary, source, licence)
        stem = layout.safe_name(f"{source}_{raw.path.stem}")
        if stem in used:  # same file name in two split folders of the source
            stem = layout.safe_name(f"{source}_{raw.split}_{raw.path.stem}")
        used.add(stem)
        image_path = out / layout.IMAGES / f"{stem}.jpg"
        if raw.path.suffix.lower() in (".jpg", ".jpeg"):
            shutil.copyfile(raw.path, image_path)
        else:
            decoded = cv2.imread(str(raw.path))
            if decoded is None:
                raise DatasetError(f"{raw.path}: cannot be decoded as an image")
            cv2.imwrite(str(image_path), decoded, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (out / layout.LABELS / f"{stem}.txt").write_text(label_text)
        record.image = image_path.name
        records.append(record)
    layout.write_sources(out, records)
    split_dataset(out, val=options.val, seed=options.seed)
    return summary


def _convert(
    raw: RawImage,
    mapping: dict[str, str],
    options: ImportOptions,
    confusers: set[str] | None,
    summary: ImportSummary,
    source: str,
    licence: str,
) -> tuple[SourceRecord, str]:
    image = cv2.imread(str(raw.path))
    if image is None:
        raise DatasetError(f"{raw.path}: cannot be decoded as an image")
    height, width = image.shape[:2]
    scale = np.array([width, height, width, height], dtype=np.float64)
    stops: list[np.ndarray] = []
    confuser_list: list[dict[str, object]] = []
    back_faces = 0
    for obj in raw.objects:
        xyxy = np.array(obj.xyxy, dtype=np.float64) * (scale if obj.normalised else 1.0)
        xyxy[[0, 2]] = xyxy[[0, 2]].clip(0, width)
        xyxy[[1, 3]] = xyxy[[1, 3]].clip(0, height)
        if obj.name in options.drop:
            summary.dropped_objects[obj.name] += 1
            continue
        if xyxy[2] - xyxy[0] < 1 or xyxy[3] - xyxy[1] < 1:
            summary.dropped_objects[f"{obj.name} (empty box)"] += 1
            continue
        if obj.name in mapping:
            if not options.keep_back_faces and is_back_face(image, tuple(xyxy)):
                back_faces += 1
                confuser_list.append({"name": "stop_sign_back", "xyxy": _norm(xyxy, scale)})
                continue
            stops.append(xyxy)
        elif confusers is None or obj.name in confusers:
            summary.confuser_objects[obj.name] += 1
            confuser_list.append({"name": obj.name, "xyxy": _norm(xyxy, scale)})
    role = "stop" if stops else ("confuser" if confuser_list else "negative")
    summary.images += 1
    summary.stop_boxes += len(stops)
    summary.roles[role] += 1
    summary.dropped_back_faces += back_faces
    boxes = np.array(stops).reshape(-1, 4)
    label_text = layout.format_label_lines(layout.xyxy_to_yolo(boxes, width, height))
    record = SourceRecord(
        image="",
        source=source,
        original=str(raw.path),
        licence=licence,
        role=role,
        n_stop=len(stops),
        confusers=confuser_list,
        dropped_back_faces=back_faces,
    )
    return record, label_text


def _norm(xyxy: np.ndarray, scale: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in xyxy / scale]


def merge_datasets(inputs: list[Path], out: Path) -> int:
    """Merge canonical datasets into a new one at ``out``; keeps each input's train/val assignment.

    Image names already carry their source prefix, so a clash means the same set twice: an error.
    Returns the number of images written.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: output folder exists and is not empty; choose a new folder")
    (out / layout.IMAGES).mkdir(parents=True)
    (out / layout.LABELS).mkdir()
    records: list[SourceRecord] = []
    train: list[str] = []
    val: list[str] = []
    for folder in map(Path, inputs):
        layout.read_data_yaml(folder)
        sources = layout.read_sources(folder)
        for image in layout.list_images(folder):
            target = out / layout.IMAGES / image.name
            if target.exists():
                raise DatasetError(
                    f"{image}: name clashes with an image of an earlier input (same set twice?)"
                )
            shutil.copyfile(image, target)
            label = layout.label_path_for(image)
            label_text = label.read_text() if label.is_file() else ""
            (out / layout.LABELS / label.name).write_text(label_text)
            if image.name not in sources:
                raise DatasetError(f"{folder / layout.SOURCES}: no record for {image.name}")
            records.append(sources[image.name])
        train += layout.read_list(folder, layout.TRAIN_LIST)
        val += layout.read_list(folder, layout.VAL_LIST)
    layout.write_sources(out, records)
    layout.write_list(out, layout.TRAIN_LIST, train)
    layout.write_list(out, layout.VAL_LIST, val)
    layout.write_data_yaml(out)
    return len(records)
